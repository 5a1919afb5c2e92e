"""The `myna` command. It sits on top of assistant, merger and tui and wires them together;
heavy parts (the model, torch, the terminal app) are imported only by the commands that use them."""
