# Conformance probe: the pipeline invokes this through the Runtime API and expects its event back.
def handler(event:, context:)
  event
end
