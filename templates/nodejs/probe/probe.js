// Conformance probe: the pipeline invokes this through the Runtime API and expects its event back.
exports.handler = async (event) => event;
