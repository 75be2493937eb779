#!/bin/sh
# ChatStreamFunction's startup script, run by the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap):
# serve app.lambda_handler over HTTP on $AWS_LWA_PORT, so the adapter can stream its answers (conduit/http/stream_server.py).
# The layer's packages are in /opt/python, which only the managed runtime's own bootstrap would add.
PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT}${PYTHONPATH:+:$PYTHONPATH}" exec python3 -m conduit.http.stream_server app.lambda_handler
