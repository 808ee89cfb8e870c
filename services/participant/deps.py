from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.crypto import Keyring


async def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


KeyringDep = Annotated[Keyring, Depends(get_keyring)]
