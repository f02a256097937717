"""``vitdeca demo``: a local web page (Gradio, the ``[demo]`` extra) that turns a photo or a short video
into the files of ``vitdeca reconstruct`` and shows them: the vis panel, a 3D viewer of the GLB, the depth
map, ARKit weights and a zip of everything.

:mod:`vitdeca.demo.engine` holds the handler logic (no Gradio needed), :mod:`vitdeca.demo.app` the page,
:mod:`vitdeca.demo.charts` the ARKit charts and :mod:`vitdeca.demo.examples` the bundled examples.
"""
