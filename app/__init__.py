"""The MaskMamba web demo: the serving runtime (no gradio needed) and the Gradio page over it."""
