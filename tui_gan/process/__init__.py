"""Training processes: starting one (launch), being one (headless), and the links a dashboard
watches and drives it through (socket_link for a process elsewhere, engine_link for a Runner in this
process), plus the viewer process that wraps a dashboard on a run it does not own."""
