"""Placeholder: registers the content-defined chunkers (rabin, buzhash, fastcdc); see issue 4."""
