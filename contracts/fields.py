"""Constrained field types shared by the messages."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

AgentId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"),
    Field(description="agent id: letters, digits and _.:@- (max 128)"),
]
Capability = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"),
    Field(description="a capability name, e.g. 'crawl' or 'llm/summarize'"),
]
ResourceName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"),
    Field(description="a named shared resource, e.g. 'gpu' or 'openai-quota'"),
]
Label = Annotated[str, StringConstraints(max_length=256)]
Seconds = Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
Attempt = Annotated[int, Field(ge=1, le=1000)]
FencingToken = Annotated[int, Field(ge=1, description="grows with every grant; stale holders fail")]
