"""The Label Studio REST calls that drive the ML backend workflow (`service.labelstudio.LabelStudioAPI`)."""

from service.labelstudio import LabelStudioAPI, LabelStudioError

__all__ = ["LabelStudioAPI", "LabelStudioError"]
