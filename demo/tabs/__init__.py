"""The app's tabs, one module per tab: each declares itself once (a `Lesson`, or its own `build`)."""
