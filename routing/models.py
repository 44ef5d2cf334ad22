from django.core.exceptions import ValidationError
from django.db import models

from common.routefields import FIELD_MAX_LENGTH, MATCH_FIELDS


class Binding(models.Model):
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="bindings")
    channel = models.CharField(
        max_length=FIELD_MAX_LENGTH, blank=True, help_text="Channel name, e.g. web (the web chat), cli (manage.py chat) or telegram."
    )
    account = models.CharField(
        max_length=FIELD_MAX_LENGTH, blank=True, help_text="Account (bot or workspace) on the channel."
    )
    peer = models.CharField(max_length=FIELD_MAX_LENGTH, blank=True, help_text="One user or chat.")
    guild = models.CharField(
        max_length=FIELD_MAX_LENGTH, blank=True, help_text="A server or guild (Discord-style)."
    )
    team = models.CharField(
        max_length=FIELD_MAX_LENGTH, blank=True, help_text="A team or workspace (Slack-style)."
    )
    note = models.CharField(
        max_length=255, blank=True, help_text="Why this binding exists; shown in routing explanations."
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=list(MATCH_FIELDS),
                condition=models.Q(enabled=True),
                name="unique_enabled_binding_match",
                violation_error_message="Another enabled binding already has exactly this match.",
            )
        ]

    def __str__(self):
        return f"{self.match_label()} → {self.agent}"

    def match(self) -> dict:
        return {f: getattr(self, f) for f in MATCH_FIELDS if getattr(self, f)}

    def match_label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.match().items()) or "default"

    def validate_constraints(self, exclude=None):
        # clean() reports a clashing match and names the other binding; validating the unique
        # constraint too would only repeat it in vaguer words. The constraint still guards the database.
        super().validate_constraints(exclude=set(exclude or ()) | set(MATCH_FIELDS))

    def clean(self):
        if not self.enabled:
            return
        clash = Binding.objects.filter(enabled=True, **{f: getattr(self, f) for f in MATCH_FIELDS}).exclude(
            pk=self.pk
        )
        other = clash.select_related("agent").first()
        if other:
            raise ValidationError(
                f"The enabled binding #{other.pk} ({other.match_label()} → {other.agent}) already has this "
                "match. Disable or edit it first, or change this binding's fields."
            )
