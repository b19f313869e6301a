# Signature of program `bergen` (cardrules sign). Verify with the public key in `key`.
program = "bergen"
component = "sha256:0c8b8c526fd404719a5704545006da4310c2b5baae9af6e8ecb4a51b5ed9714f"
manifest = "sha256:6328b3448f7742531740adfe7bd1daf5bd9b2a2c3c1583ff6e3b4b3d44a502f0"
key = "ed25519:gm3OyeRh49evlzFypwDZRAE7CZFoUhHxUsdhe7Ou3mk="
signature = "tP/MV4qRjtDrJFV/dAszYJ4l5lY2avmHcCXsxMI0ARua0ycWyUhGILjUSonB4OkW1OaJtOOeLOzB1jJqtpIxAg=="
