#!/usr/bin/env python3
"""Rotate the signing keys in ``keys/``: the same command as ``jwtsess-keys``.

Usage: ``python scripts/rotate_keys.py [--dir keys] {init,rotate,prune,list,jwks}``.
The procedure is in docs/operations.md.
"""

from jwtsess.keytool import main

if __name__ == "__main__":
    raise SystemExit(main())
