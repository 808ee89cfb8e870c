from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.participant.catalogue import EventCatalogue
from shared.crypto import Keyring


async def get_keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


KeyringDep = Annotated[Keyring, Depends(get_keyring)]


async def get_catalogue(request: Request) -> EventCatalogue:
    catalogue: EventCatalogue = request.app.state.catalogue
    return catalogue


CatalogueDep = Annotated[EventCatalogue, Depends(get_catalogue)]
