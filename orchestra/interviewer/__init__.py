"""Human interaction: the Interviewer protocol and its built-in implementations."""

from orchestra.interviewer.base import Answer as Answer
from orchestra.interviewer.base import AnswerValue as AnswerValue
from orchestra.interviewer.base import AutoApproveInterviewer as AutoApproveInterviewer
from orchestra.interviewer.base import CallbackInterviewer as CallbackInterviewer
from orchestra.interviewer.base import Interviewer as Interviewer
from orchestra.interviewer.base import NoTerminalInterviewer as NoTerminalInterviewer
from orchestra.interviewer.base import Option as Option
from orchestra.interviewer.base import Question as Question
from orchestra.interviewer.base import QuestionType as QuestionType
from orchestra.interviewer.base import QueueInterviewer as QueueInterviewer
from orchestra.interviewer.base import RecordingInterviewer as RecordingInterviewer

__all__ = [
    "Answer",
    "AnswerValue",
    "AutoApproveInterviewer",
    "CallbackInterviewer",
    "Interviewer",
    "Option",
    "Question",
    "QuestionType",
    "QueueInterviewer",
    "RecordingInterviewer",
]
