#!/bin/sh
# Entrypoint of every lambda-base-images image: the handler is the one argument (the image's
# CMD, or the function's ImageConfig.Command on Lambda).
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

if [ -n "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec "$RUNTIME_ENTRYPOINT"
fi
if [ -x /usr/local/bin/aws-lambda-rie ]; then
  exec /usr/local/bin/aws-lambda-rie "$RUNTIME_ENTRYPOINT"
fi
echo "lambda-entrypoint.sh: AWS_LAMBDA_RUNTIME_API is not set; run this image on Lambda, or locally with 'lambda-images invoke IMAGE'" 1>&2
exit 1
