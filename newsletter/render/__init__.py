"""Issue model -> the artefacts readers see: responsive HTML email and its plain-text part."""
