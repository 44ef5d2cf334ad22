"""Form fields the apps' admins share."""

import re

from django import forms

_SEPARATORS = re.compile(r"[,\n]")


class NameListField(forms.CharField):
    """A list of names typed as `telegram, slack` (or one per line; `*` where the field allows it),
    stored as a JSON list. `one_per_line` shows it as a text area with a name per line."""

    def __init__(self, *args, one_per_line: bool = False, **kwargs):
        if one_per_line:
            kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "cols": 40}))
        self.joiner = "\n" if one_per_line else ", "
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        return self.joiner.join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [name.strip() for name in _SEPARATORS.split(super().to_python(value) or "") if name.strip()]
