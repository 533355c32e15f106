"""The Label Studio REST calls that drive the ML backend workflow (`service.demo.labelstudio.LabelStudioAPI`)."""

from service.demo.labelstudio import LabelStudioAPI, LabelStudioError

__all__ = ["LabelStudioAPI", "LabelStudioError"]
