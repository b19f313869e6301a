//! The host side of the policy world's imports: what a policy may ask while it runs —
//! its program's ledger, read through a read-only view, its config, and the calendar —
//! kept apart from the sandbox that owns the engine, the limits and the store.

use crate::calendar::Calendar;
use crate::error::Result;
use crate::ledger::View;
use crate::sandbox::{GuestState, MAX_SAID_CHARS};
use crate::world::{self, cardrules, wit};

impl GuestState {
    /// Reads the program's ledger.
    fn read<T>(&self, read: impl FnOnce(&dyn View) -> T) -> wasmtime::Result<T> {
        match self.view.as_deref() {
            Some(view) => Ok(read(view)),
            None => Err(wasmtime::format_err!(
                "the ledger cannot be read during `describe`"
            )),
        }
    }

    fn calendar<T>(&self, compute: impl FnOnce(&Calendar) -> Result<T>) -> wasmtime::Result<T> {
        compute(&self.context.calendar).map_err(|e| wasmtime::format_err!(e.to_string()))
    }
}

impl cardrules::policy::types::Host for GuestState {}

impl cardrules::policy::diagnostics::Host for GuestState {
    /// Keeps the first thing a guest says before it traps (its panic message), cut short:
    /// the `policy-error` that follows shows it.
    fn panicked(&mut self, message: String) -> wasmtime::Result<()> {
        if self.said.is_none() {
            let message = message.trim();
            let mut said: String = message.chars().take(MAX_SAID_CHARS).collect();
            if said.len() < message.len() {
                said.push('…');
            }
            self.said = Some(said);
        }
        Ok(())
    }
}

impl cardrules::policy::ledger::Host for GuestState {
    fn count_in(
        &mut self,
        card: Option<String>,
        counter: String,
        period: wit::Period,
        at: wit::Instant,
    ) -> wasmtime::Result<u64> {
        let (from, to) = self.calendar(|c| c.period_of(world::period(period), at))?;
        self.read(|view| view.count(card.as_deref(), &counter, from, to))
    }

    fn count_within(
        &mut self,
        card: Option<String>,
        counter: String,
        span: wit::Window,
    ) -> wasmtime::Result<u64> {
        self.read(|view| view.count(card.as_deref(), &counter, span.start, span.end))
    }

    fn last_use(
        &mut self,
        card: String,
        counter: String,
    ) -> wasmtime::Result<Option<wit::Instant>> {
        self.read(|view| view.last_use(&card, &counter))
    }

    fn balance(&mut self, card: String, asset: String, at: wit::Instant) -> wasmtime::Result<i64> {
        self.read(|view| view.balance(&card, &asset, at))
    }

    fn find_holder(&mut self, card: String) -> wasmtime::Result<Option<wit::Holder>> {
        self.read(|view| view.holder(&card).map(world::holder))
    }

    fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.context.config.get(&key).cloned())
    }
}

impl cardrules::policy::calendar::Host for GuestState {
    fn local(&mut self, at: wit::Instant) -> wasmtime::Result<wit::LocalTime> {
        self.calendar(|c| c.local(at)).map(world::local_time)
    }

    fn period_of(
        &mut self,
        period: wit::Period,
        at: wit::Instant,
    ) -> wasmtime::Result<wit::Window> {
        let (start, end) = self.calendar(|c| c.period_of(world::period(period), at))?;
        Ok(wit::Window { start, end })
    }

    fn add_months(&mut self, at: wit::Instant, months: i32) -> wasmtime::Result<wit::Instant> {
        self.calendar(|c| c.add_months(at, months))
    }
}
