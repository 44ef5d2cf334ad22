from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from agents.models import Agent

from .models import Binding
from .resolver import clear_cache


@receiver([post_save, post_delete], sender=Binding)
@receiver([post_save, post_delete], sender=Agent)
def invalidate_routing_cache(**kwargs):
    clear_cache()
