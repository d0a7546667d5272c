// Conformance probe for the go family: a Lambda function built with aws-lambda-go, deployed as
// the executable `bootstrap`. It echoes its event back; an event with "describe": true gets a
// description of where it ran instead (architecture, context fields, environment).
package main

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type request struct {
	Describe bool `json:"describe"`
}

func handle(ctx context.Context, event json.RawMessage) (any, error) {
	var req request
	if err := json.Unmarshal(event, &req); err != nil || !req.Describe {
		return event, nil
	}
	description := map[string]any{
		"event":        event,
		"arch":         runtime.GOARCH,
		"goVersion":    runtime.Version(),
		"functionName": lambdacontext.FunctionName,
		"memoryMB":     lambdacontext.MemoryLimitInMB,
		"executionEnv": os.Getenv("AWS_EXECUTION_ENV"),
		"handler":      os.Getenv("_HANDLER"),
		"executable":   os.Args[0],
		"remainingMs":  int64(0),
		"requestId":    "",
		"invokedArn":   "",
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		description["requestId"] = lc.AwsRequestID
		description["invokedArn"] = lc.InvokedFunctionArn
	}
	if deadline, ok := ctx.Deadline(); ok {
		description["remainingMs"] = time.Until(deadline).Milliseconds()
	}
	return description, nil
}

func main() {
	lambda.Start(handle)
}
