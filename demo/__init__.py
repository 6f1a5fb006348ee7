"""CNN Lab's Gradio tabs: one module per concept, each exporting `build()`."""
