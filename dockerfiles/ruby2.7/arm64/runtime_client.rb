# frozen_string_literal: true

# The Ruby runtime interface client of lambda-base-images: it serves a Ruby handler through
# Lambda's Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) the way
# AWS's Ruby runtimes do, with Ruby's standard library only (net/http, json), for images built
# where AWS's client gem cannot be fetched.
#
#   ruby /var/runtime/lib/runtime_client.rb HANDLER     (the bootstrap runs this)
#
# What it reproduces of AWS's Ruby runtime, as AWS documents it:
# - handlers `file.method` (a method defined at the top level of file.rb) and
#   `file.Module::Class.method` (a class method), called with the keyword arguments
#   `event:` and `context:`; the task root and RUBYLIB are on the load path;
# - the event is the parsed JSON of the payload (a Hash, Array, String…), or the raw payload when
#   it is not JSON; the result is sent as its JSON, an IO's content as it is;
# - the context object: aws_request_id, invoked_function_arn, function_name, function_version,
#   memory_limit_in_mb, log_group_name, log_stream_name, deadline_ms, identity, client_context
#   and get_remaining_time_in_millis;
# - errors in Lambda's shape, {"errorMessage", "errorType": "Function<Class>", "stackTrace"}
#   ("Init<Class>" when the handler cannot be loaded), with the Lambda-Runtime-Function-Error-Type
#   header; a NoMethodError, a NameError or an exception that is no StandardError ends the
#   process after it is reported, so the next event starts a new one;
# - _X_AMZN_TRACE_ID set to each event's trace header; stdout and stderr unbuffered, so what the
#   function prints reaches the log as it runs.

require "json"
require "net/http"
require "stringio"

module LambdaImages
  # Talks to the Runtime API at AWS_LAMBDA_RUNTIME_API (host:port).
  class RuntimeAPI
    VERSION_PATH = "/2018-06-01/runtime"
    USER_AGENT = "lambda-images-ruby/#{RUBY_VERSION}"

    def initialize(address)
      host, _, port = address.rpartition(":")
      raise ArgumentError, "AWS_LAMBDA_RUNTIME_API #{address.inspect} is not host:port" if host.empty?

      @host = host.delete_prefix("[").delete_suffix("]")
      @port = Integer(port, 10)
    end

    # Waits for the next event: [request id, headers (lower-case names), body].
    def next_event
      response = request(Net::HTTP::Get.new("#{VERSION_PATH}/invocation/next"), read_timeout: nil)
      unless response.is_a?(Net::HTTPSuccess)
        raise IOError, "the Runtime API answered #{response.code} to invocation/next"
      end

      headers = response.each_header.to_h
      [headers.fetch("lambda-runtime-aws-request-id"), headers, response.body || ""]
    end

    def respond(request_id, body, content_type)
      post("#{VERSION_PATH}/invocation/#{request_id}/response", body, "Content-Type" => content_type)
    end

    def report(request_id, failure)
      post("#{VERSION_PATH}/invocation/#{request_id}/error", failure.to_json, failure.headers)
    end

    def report_init(failure)
      post("#{VERSION_PATH}/init/error", failure.to_json, failure.headers)
    end

    private

    def post(path, body, headers)
      post = Net::HTTP::Post.new(path)
      headers.each { |name, value| post[name] = value }
      post.body = body
      request(post, read_timeout: 60)
    end

    def request(message, read_timeout:)
      message["User-Agent"] = USER_AGENT
      http = Net::HTTP.new(@host, @port)
      http.read_timeout = read_timeout
      http.start { |connection| connection.request(message) }
    end
  end

  # What a handler gets as `context:`.
  class Context
    attr_reader :aws_request_id, :invoked_function_arn, :function_name, :function_version,
                :memory_limit_in_mb, :log_group_name, :log_stream_name, :deadline_ms,
                :identity, :client_context, :tenant_id

    def initialize(request_id, headers)
      @aws_request_id = request_id
      @deadline_ms = headers.fetch("lambda-runtime-deadline-ms", "0").to_i
      @invoked_function_arn = headers["lambda-runtime-invoked-function-arn"]
      @identity = Context.json_header(headers["lambda-runtime-cognito-identity"])
      @client_context = Context.json_header(headers["lambda-runtime-client-context"])
      tenant = headers["lambda-runtime-aws-tenant-id"]
      @tenant_id = tenant unless tenant.nil? || tenant.empty?
      @function_name = ENV.fetch("AWS_LAMBDA_FUNCTION_NAME", nil)
      @function_version = ENV.fetch("AWS_LAMBDA_FUNCTION_VERSION", nil)
      # A string, as AWS's Ruby runtime gives it (the variable's value).
      @memory_limit_in_mb = ENV.fetch("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", nil)
      @log_group_name = ENV.fetch("AWS_LAMBDA_LOG_GROUP_NAME", nil)
      @log_stream_name = ENV.fetch("AWS_LAMBDA_LOG_STREAM_NAME", nil)
    end

    # Milliseconds left before the event's deadline (the wall clock of Lambda-Runtime-Deadline-Ms).
    def get_remaining_time_in_millis
      now = Process.clock_gettime(Process::CLOCK_REALTIME, :millisecond)
      [@deadline_ms - now, 0].max
    end

    def self.json_header(value)
      return nil if value.nil? || value.empty?

      JSON.parse(value)
    rescue JSON::ParserError
      nil
    end
  end

  # An exception as Lambda reports it.
  class Failure
    # Lambda names these in the error-type header; any other class is a UserException there.
    NAMED = %w[ArgumentError NoMethodError Exception StandardError NameError LoadError SystemExit
               SystemStackError].freeze
    # Frames of the runtime client itself are cut from the stack trace, from the first one on.
    OWN_FRAMES = File.expand_path(__dir__)
    MAX_FRAMES = 100

    attr_reader :type

    def initialize(exception, phase)
      @class_name = exception.class.name || exception.class.to_s
      @type = "#{phase}<#{@class_name}>"
      @message = exception.message.to_s
      @trace = Failure.trace(exception)
    end

    def header_type
      NAMED.include?(@class_name) ? @type : "Function<UserException>"
    end

    def headers
      { "Content-Type" => "application/json", "Lambda-Runtime-Function-Error-Type" => header_type }
    end

    def to_h
      { "errorMessage" => @message, "errorType" => @type, "stackTrace" => @trace }
    end

    def to_json(*_args)
      JSON.generate(to_h)
    rescue JSON::GeneratorError, Encoding::UndefinedConversionError
      # A message that is not valid UTF-8 is sent with its bad bytes replaced.
      clean = to_h.transform_values { |v| v.is_a?(String) ? v.scrub : v.map(&:scrub) }
      JSON.generate(clean)
    end

    def self.trace(exception)
      lines = []
      (exception.backtrace_locations || []).first(MAX_FRAMES).each do |location|
        path = location.absolute_path || location.path.to_s
        break if path.start_with?("#{OWN_FRAMES}/")

        lines << location.to_s
      end
      lines
    end
  end

  # Loads the handler's file and calls its method for each event.
  class Handler
    attr_reader :file

    def initialize(spec)
      parts = spec.to_s.split(".")
      unless [2, 3].include?(parts.size) && parts.none?(&:empty?)
        raise ArgumentError, "handler #{spec.inspect} is not FILE.METHOD or FILE.Module::Class.METHOD " \
                             "(FILE.rb in the task root; METHOD a class method when a class is named)"
      end

      @file = parts.first
      @owner = parts.size == 3 ? parts[1] : nil
      @method = parts.last
    end

    def load(task_root)
      $LOAD_PATH.unshift(task_root) unless $LOAD_PATH.include?(task_root)
      require @file
    end

    def call(event, context)
      receiver = @owner ? Object.const_get(@owner) : TOPLEVEL_BINDING.receiver
      receiver.__send__(@method, event: event, context: context)
    end
  end

  # The loop: next event, the handler, its response or error.
  class Runtime
    def initialize(api, handler)
      @api = api
      @handler = handler
    end

    def init(task_root)
      @handler.load(task_root)
      true
    rescue Exception => e # a LoadError, a SyntaxError… as well as any StandardError
      failure = Failure.new(e, "Init")
      log("Init error when loading handler", failure)
      @api.report_init(failure)
      false
    end

    def serve
      loop do
        request_id, headers, body = @api.next_event
        trace = headers["lambda-runtime-trace-id"]
        trace.nil? || trace.empty? ? ENV.delete("_X_AMZN_TRACE_ID") : ENV["_X_AMZN_TRACE_ID"] = trace
        break unless invoke(request_id, headers, body)
      end
    end

    private

    # True while the process may take the next event.
    def invoke(request_id, headers, body)
      result = @handler.call(parse(body), Context.new(request_id, headers))
      payload, content_type = marshal(result)
      @api.respond(request_id, payload, content_type)
      true
    rescue NoMethodError, NameError => e
      fail_invocation(request_id, e)
      false
    rescue StandardError => e
      fail_invocation(request_id, e)
      true
    rescue Exception => e # SystemExit, ScriptError, NotImplementedError…
      fail_invocation(request_id, e)
      false
    end

    def fail_invocation(request_id, exception)
      failure = Failure.new(exception, "Function")
      log("Error raised from handler method", failure)
      @api.report(request_id, failure)
    end

    def parse(body)
      JSON.parse(body)
    rescue JSON::ParserError
      body
    end

    def marshal(result)
      if result.is_a?(IO) || result.is_a?(StringIO)
        [result.read, "application/unknown"]
      else
        [result.to_json, "application/json"]
      end
    end

    def log(what, failure)
      $stderr.puts("#{what} #{JSON.generate(failure.to_h)}")
    rescue StandardError
      $stderr.puts("#{what} #{failure.type}")
    end
  end

  def self.main(argv)
    $stdout.sync = true
    $stderr.sync = true
    handler_spec = argv.first || ENV.fetch("_HANDLER", "")
    address = ENV.fetch("AWS_LAMBDA_RUNTIME_API", "")
    if address.empty?
      warn "runtime_client.rb: AWS_LAMBDA_RUNTIME_API is not set; run this under Lambda's Runtime API"
      return 2
    end
    api = RuntimeAPI.new(address)
    runtime = begin
      Runtime.new(api, Handler.new(handler_spec))
    rescue ArgumentError => e
      api.report_init(Failure.new(e, "Init"))
      warn "runtime_client.rb: #{e.message}"
      return 1
    end
    return 1 unless runtime.init(ENV.fetch("LAMBDA_TASK_ROOT", "/var/task"))

    runtime.serve
    1 # serve returns only when an exception ended the process's use
  end
end

exit(LambdaImages.main(ARGV)) if $PROGRAM_NAME == __FILE__
