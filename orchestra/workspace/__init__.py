"""Git workspaces (DESIGN §7), through dulwich: every session works on its own branch in its
own worktree, every agent turn that writes files is a commit, parallel branches get
worktrees of their own and are merged at the fan-in. The user's checkout is never touched.
"""

from orchestra.workspace.messages import CommitMessages as CommitMessages
from orchestra.workspace.names import branch_name as branch_name
from orchestra.workspace.session import SessionWorkspaces as SessionWorkspaces
from orchestra.workspace.stage import StageWorktrees as StageWorktrees

__all__ = ["CommitMessages", "SessionWorkspaces", "StageWorktrees", "branch_name"]
