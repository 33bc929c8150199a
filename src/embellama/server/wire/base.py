"""What every wire declaration shares: strict parsing, our error texts, and schemas.

Pydantic validates; its first error becomes today's OpenAI-shaped fault: the field's
`Says` gives the message (formatted with the offending value), the error's `loc` the
`param`. A validator refuses with `refuse(...)` to choose message, code and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo
from pydantic import ValidationError as _ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from embellama.errors import EmbellamaError
from embellama.server.errors import ApiError

__all__ = [
    "Name",
    "OffFlag",
    "OnFlag",
    "Positive",
    "Says",
    "WireModel",
    "limit",
    "or_default",
    "parse",
    "refuse",
]

M = TypeVar("M", bound="WireModel")
_REFUSED = "embellama_refused"


class WireModel(BaseModel):
    """A request body: extra fields ignored (clients send `user` and more), strict types
    (`true` is not an int, `"1"` is not an int), fields checked in declaration order."""

    model_config = ConfigDict(extra="ignore", strict=True, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class Says:
    """A field's fault text, `{input!r}` being the value sent and `{name}` the field's;
    `missing` for an absent required field (its text and code)."""

    message: str
    code: str | None = "invalid_value"
    missing: str | None = None
    missing_code: str = "missing_required_parameter"


def refuse(
    message: str,
    *,
    code: str | None = "invalid_value",
    status: int = 400,
    suffix: str = "",
    param: str | None = None,
    named: bool = False,
) -> PydanticCustomError:
    """A validator's fault with its exact message. `suffix` extends the param (`[2]`),
    `param` replaces it; `named`: `{param}` in the message is the name the body used (a
    field with aliases)."""
    context = {
        "message": message,
        "code": code,
        "status": status,
        "suffix": suffix,
        "param": param,
        "named": named,
    }
    return PydanticCustomError(_REFUSED, "{message}", context)


def or_default(default: object) -> BeforeValidator:
    """JSON `null` means the field's default, as if it were absent."""

    def replace(value: object) -> object:
        return default if value is None else value

    return BeforeValidator(replace)


# The common optional fields; JSON null is the same as leaving one out.
Name = Annotated[str | None, Says("'{name}' must be a string")]
Positive = Annotated[
    int | None, Field(ge=1), Says("'{name}' must be a positive integer, got {input!r}")
]
_FLAG = Says("'{name}' must be true or false, got {input!r}")
OffFlag = Annotated[bool, or_default(False), _FLAG]
OnFlag = Annotated[bool, or_default(True), _FLAG]


def parse(model: type[M], body: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> M:
    """`body` as `model`, or the first fault (fields in declaration order) raised."""
    try:
        return model.model_validate(body, context=context)
    except _ValidationError as exc:
        raise _fault(model, exc.errors(include_url=False)[0]) from None


def _fault(model: type[WireModel], error: ErrorDetails) -> Exception:
    context = error.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, EmbellamaError):  # a domain check (parse_inputs): its own mapping
        return cause
    name = str(error["loc"][0]) if error["loc"] else ""
    param = name + "".join(f"[{step}]" for step in error["loc"][1:])
    if error["type"] == _REFUSED:
        message = context["message"]
        return ApiError(
            context["status"],
            message.format(param=name) if context["named"] else message,
            param=context["param"] or param + context["suffix"],
            code=context["code"],
        )
    says = _says(model).get(name)
    if says is None:  # pragma: no cover - every field of a wire model says its fault
        return ApiError(400, f"'{name}': {error['msg']}", param=param, code="invalid_value")
    if error["type"] == "missing":
        text = says.missing or says.message.format(input=None, name=name)
        return ApiError(400, text, param=param, code=says.missing_code)
    text = says.message.format(input=error["input"], name=name)
    return ApiError(400, text, param=param, code=says.code)


@cache
def _says(model: type[WireModel]) -> dict[str, Says]:
    """Each field's `Says`, under every name the body may use for it (its aliases)."""
    found: dict[str, Says] = {}
    for name, field in model.model_fields.items():
        says = next((item for item in field.metadata if isinstance(item, Says)), None)
        if says is None:
            continue
        names = [name]
        if isinstance(field.validation_alias, AliasChoices):
            names += [str(choice) for choice in field.validation_alias.choices]
        elif isinstance(field.validation_alias, str):
            names.append(field.validation_alias)
        found.update(dict.fromkeys(names, says))
    return found


def limit(info: ValidationInfo, key: str) -> int:
    """A limit the parse function passed in the validation context."""
    assert info.context is not None, "parse with the server's limits"
    value: int = info.context[key]
    return value
