"""What the tests share when they call the tabs' handlers as plain functions: small settings,
the last update of a stream, and a stand-in for the browser session Gradio passes."""

# Settings every tab accepts that train in seconds on the tiny datasets (tests/conftest.py).
SMALL = dict(preset="quick", epochs=1, n_train=160, lr=0.01, batch_size=32, seed=0)


def last(stream):
    """A stream's last update."""
    update = None
    for update in stream:
        pass
    return update


class Session:
    """A stand-in for the gr.Request Gradio passes a handler: one browser session."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash
