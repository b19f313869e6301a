# Signature of program `bergen` (cardrules sign) over every file listed under
# [files]. Verify with the public key in `key`.
format = "cardrules policy signature v2"
program = "bergen"
key = "ed25519:WjNHsupwz7pFjvIVwBnv2/zXTdJ9QoSzw4XKwDfq6Fo="
signature = "Skciqbd8O7NYZKHXJwmChGPhQY6jzTVkw/P4P2b8IrpsBkwIutQnJ51UlTcQLSLwFautZQ8svQ+I4UONFLh9DQ=="

[files]
"catalogue.toml" = "sha256:35c260bb9530890ae1ad3ac718ab8b9520db4f468ffaff495a5ec8947fe5a7b3"
"policy.toml" = "sha256:6328b3448f7742531740adfe7bd1daf5bd9b2a2c3c1583ff6e3b4b3d44a502f0"
"policy.wasm" = "sha256:0c8b8c526fd404719a5704545006da4310c2b5baae9af6e8ecb4a51b5ed9714f"
