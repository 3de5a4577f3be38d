"""fastcifar's Triton kernels, installed as ``fastcifar.kernels``.

Always import them as ``fastcifar.kernels`` (never as top-level ``kernels``: PyPI has an unrelated
package of that name). From a source checkout ``fastcifar`` maps this folder into place itself.
"""
