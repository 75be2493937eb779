"""What response bodies look like: the base of every response model (the page and the error body, which
only route handlers need, are in conduit.http.routes).

A domain module builds a body from its stored item with its model (`AgentView.of(item)`), and the
route's return annotation names the model: Powertools documents it in the OpenAPI document and
checks each answer against it (a body that does not match is a 500 INTERNAL_ERROR, logged;
conduit.http.api). Bodies keep their long-standing shape:

- `Omitted` fields are left out of the body when None (a webhook agent's `webhook`, a message's
  `toolCalls`, …): the key is absent, never null, and the document says so (not required, not
  nullable);
- every other field is always there, null where its type allows;
- unknown keys are refused when a body is checked (`extra="forbid"`): the model says everything
  a client can get. The document does not forbid additional properties, so clients stay free to
  accept fields added later.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class _Omitted:
    """Annotation marker: `field: Annotated[X | None, Omitted] = None` is left out when None."""

    def __repr__(self) -> str:
        return "Omitted"


Omitted = _Omitted()


def _document_schema(schema: dict[str, Any], model: type[View]) -> None:
    """The model's JSON schema as the OpenAPI document shows it."""
    schema.pop("additionalProperties", None)
    properties = schema.get("properties", {})
    for name in model.omitted_fields:
        prop = properties.get(name)
        if prop is None:
            continue
        prop.pop("default", None)  # absent, not null
        variants = [variant for variant in prop.pop("anyOf", []) if variant != {"type": "null"}]
        if len(variants) == 1:
            prop.update(variants[0])
        elif variants:
            prop["anyOf"] = variants


class View(BaseModel):
    """A response body (or a part of one)."""

    # defer_build: a model's validator and serializer are built when first used, so a function pays only
    # for the answers it gives (the run steps function imports runs and chat, and answers no request).
    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_schema, defer_build=True)
    omitted_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.omitted_fields = frozenset(name for name, field in cls.model_fields.items() if Omitted in field.metadata)

    @model_serializer(mode="wrap")
    def _leave_out_omitted(self, handler: SerializerFunctionWrapHandler):  # noqa: ANN202 - it would be the schema
        data = handler(self)
        for name in self.omitted_fields:
            if data.get(name, 0) is None:
                del data[name]
        return data

    def body(self) -> dict[str, Any]:
        """The body as plain JSON values."""
        return self.model_dump(mode="json")


class TokenUsage(View):
    """Tokens the model turns used (API.md §14)."""

    inputTokens: int
    outputTokens: int
