#!/usr/bin/env python3
"""The Django example's manage.py (python3 manage.py runserver; see examples/django/README.md)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
