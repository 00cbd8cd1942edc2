#!/usr/bin/env python3
"""Execute a notebook (nbclient, the ipykernel python3 kernel) and fail if a cell fails.
    PYTHONPATH=build/python python3 examples/notebooks/run_notebook.py examples/notebooks/massive_activations.ipynb"""
import os
import sys

import nbclient
import nbformat

path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
client.execute()  # (raises CellExecutionError, naming the cell, at the first failing one)
cells = sum(1 for c in nb.cells if c.cell_type == "code")
figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
print(f"{path}: {cells} code cells ran, {figures} figures")
if figures < 4:
    sys.exit(f"{path}: {figures} figures drawn, expected at least 4")
