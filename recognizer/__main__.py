from .console import recognizer

recognizer()
