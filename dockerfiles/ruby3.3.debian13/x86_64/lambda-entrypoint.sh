#!/bin/sh
# Entrypoint of every lambda-base-images image, with the semantics of AWS's base images: the
# handler is the one argument (the image's CMD, or the function's ImageConfig.Command on Lambda).
if [ $# -ne 1 ]; then
  echo "lambda-entrypoint.sh: expected exactly one argument, the handler (for example app.handler)" 1>&2
  exit 142
fi
export _HANDLER="$1"

# The runtime's bootstrap; custom runtimes may bring theirs with the function code instead.
for candidate in "${LAMBDA_RUNTIME_DIR:-/var/runtime}/bootstrap" "${LAMBDA_TASK_ROOT:-/var/task}/bootstrap" /opt/bootstrap; do
  if [ -x "$candidate" ]; then
    RUNTIME_ENTRYPOINT="$candidate"
    break
  fi
done
if [ -z "${RUNTIME_ENTRYPOINT:-}" ]; then
  echo "lambda-entrypoint.sh: no executable bootstrap in /var/runtime, /var/task or /opt" 1>&2
  exit 127
fi

# On Lambda (or under another Runtime API, such as `lambda-images invoke`), the service's
# Runtime API is in AWS_LAMBDA_RUNTIME_API: run the bootstrap itself.
if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec "$RUNTIME_ENTRYPOINT"
fi
# Anywhere else (`docker run -p 9000:8080 IMAGE app.handler`): AWS's runtime interface emulator
# serves the invoke endpoint on port 8080 and runs the bootstrap with the handler behind it.
RIE=/usr/local/bin/aws-lambda-rie
if [ ! -x "$RIE" ]; then
  echo "lambda-entrypoint.sh: AWS_LAMBDA_RUNTIME_API is not set and $RIE is missing; run this image on Lambda, or locally with 'lambda-images invoke IMAGE'" 1>&2
  exit 127
fi
exec "$RIE" "$RUNTIME_ENTRYPOINT" "$_HANDLER"
