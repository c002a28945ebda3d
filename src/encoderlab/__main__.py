"""``python -m encoderlab`` (what torchrun launches: ``torchrun ... -m encoderlab pretrain``)."""

from encoderlab.cli import main

main()
