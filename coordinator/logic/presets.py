"""Ready-made job descriptions: the EGI Workload Manager tutorial's hello world (the demo's
job and the Launchpad's first preset) and a small parametric job (the Launchpad's second)."""

from __future__ import annotations

TUTORIAL_JDL = """[
    JobName = "Simple_Job";
    Executable = "/bin/ls";
    Arguments = "-ltr";
    StdOutput = "StdOut";
    StdError = "StdErr";
    OutputSandbox = {"StdOut","StdErr"};
]
"""

PARAMETRIC_JDL = """[
    JobName = "scan_%n";
    Executable = "/bin/echo";
    Arguments = "point %s of the scan";
    Parameters = 5;
    ParameterStart = 0;
    ParameterStep = 0.5;
    StdOutput = "StdOut";
    StdError = "StdErr";
    OutputSandbox = {"StdOut","StdErr"};
]
"""
