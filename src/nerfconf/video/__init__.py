"""Real-time video of the sender's head crop: the call's fallback when the receiver has no avatar of the
sender, and the weak-network baseline the avatar mode is measured against.

Sans-I/O parts, each given the time: the fragment format (``packets``), reassembly with a deadline
(``assembler``), NACKs and loss reports (``losses``), the rate controller (``rate``) and the
resolution / frame-rate ladder (``ladder``). Around PyAV's encoders and decoders: ``encoder`` and
``decoder``. ``send`` and ``receive`` join them into one side of a video stream each; the pipeline
wires those to the connection and the display.
"""
