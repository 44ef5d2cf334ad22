from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from agents.models import Agent

from .models import Binding
from .resolver import clear_cache


@receiver([post_save, post_delete], sender=Binding)
@receiver([post_save, post_delete], sender=Agent)
def invalidate_routing_cache(**kwargs):
    clear_cache()
    # Other threads read only committed rows, so one of them may cache the old state between this
    # save and the commit (the admin and loadconfig save inside transactions): clear again then.
    transaction.on_commit(clear_cache)
