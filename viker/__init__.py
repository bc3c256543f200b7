"""viker: make multimodal LLMs forget chosen people, and measure that they did."""

__version__ = "0.1.0"
