from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.participant.catalogue import EventCatalogue


async def get_catalogue(request: Request) -> EventCatalogue:
    catalogue: EventCatalogue = request.app.state.catalogue
    return catalogue


CatalogueDep = Annotated[EventCatalogue, Depends(get_catalogue)]
