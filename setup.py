"""Builds the spandsp cffi extension (API mode) while installing the package."""
from setuptools import setup

setup(cffi_modules=["appliance/spandsp/_build.py:ffibuilder"])
