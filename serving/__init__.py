"""Serving a class from one server, without Gradio: the training queue (classroom, jobs), finished
runs on disk (cache), the trained models sessions hold (model_store), the bounded map behind every
registry (lru), and each browser session's state, owned in one place (sessions)."""
