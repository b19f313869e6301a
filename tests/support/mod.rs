//! What the end-to-end test files share: the shipped policies and copies of them, program
//! directories for the hostile guests, engines over the policies, a fresh PostgreSQL
//! database, and the real server on a loopback port with HTTP helpers.

// Each test file is a crate of its own and uses only part of this.
#![allow(dead_code)]

pub mod browser;
pub mod files;
pub mod hostile;
pub mod hosts;
pub mod postgres;
pub mod server;
pub mod toolchains;
