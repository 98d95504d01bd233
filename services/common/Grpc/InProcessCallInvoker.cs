using System.Threading.Channels;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Conduit.Common.Grpc;

/// <summary>
/// Calls gRPC service implementations in the same process: no sockets, no serialization. Messages pass by
/// reference, so a handler must not mutate its request, and a caller must not mutate a response it got.
/// Supports unary and server-streaming methods; client-streaming and duplex calls throw NotSupportedException.
/// Handlers run through server interceptors (by default <see cref="MatrixErrorServerInterceptor"/>) and failures
/// reach the caller as the <see cref="RpcException"/> a network client would see, so wrapping the invoker with
/// <see cref="MatrixErrors.WithMatrixErrors"/> behaves the same in process and over the network.
/// </summary>
public sealed class InProcessCallInvoker : CallInvoker
{
    /// <summary>Capacity of the channel between a streaming handler and its reader; the handler waits when it is full.</summary>
    public const int StreamBufferSize = 32;

    private readonly Dictionary<string, object> _handlers;
    private readonly IServiceProvider? _services;

    private InProcessCallInvoker(Dictionary<string, object> handlers, IServiceProvider? services)
    {
        _handlers = handlers;
        _services = services;
    }

    /// <summary>
    /// An invoker for the services bound by <paramref name="binds"/>, each e.g.
    /// <c>b =&gt; MyService.BindService(b, impl)</c>, with <see cref="MatrixErrorServerInterceptor"/> applied.
    /// <paramref name="services"/>, if given, is available to handlers as
    /// <c>context.UserState[typeof(IServiceProvider)]</c>.
    /// </summary>
    public static InProcessCallInvoker Create(IServiceProvider? services, params Action<ServiceBinderBase>[] binds) =>
        Create(services, [new MatrixErrorServerInterceptor()], binds);

    /// <summary>As above with explicit server interceptors, the first being the outermost.</summary>
    public static InProcessCallInvoker Create(IServiceProvider? services, IReadOnlyList<Interceptor> serverInterceptors, params Action<ServiceBinderBase>[] binds)
    {
        var binder = new Binder(serverInterceptors);
        foreach (var bind in binds) bind(binder);
        return new InProcessCallInvoker(binder.Handlers, services);
    }

    /// <summary>Full names (<c>/package.Service/Method</c>) of the bound methods.</summary>
    public IReadOnlyCollection<string> Methods => _handlers.Keys;

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var call = AsyncUnaryCall(method, host, options, request);
        try
        {
            return call.ResponseAsync.GetAwaiter().GetResult();
        }
        finally
        {
            call.Dispose();
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var context = new InProcessServerCallContext(method.FullName, host, options, _services);
        Task<TResponse> response;
        if (_handlers.TryGetValue(method.FullName, out var h) && h is UnaryServerMethod<TRequest, TResponse> handler)
        {
            response = RunUnary(handler, request, context);
        }
        else
        {
            response = Task.FromException<TResponse>(context.Fail(Unimplemented(method)));
        }
        return new AsyncUnaryCall<TResponse>(response, context.ResponseHeadersAsync, context.GetStatus, context.GetTrailers, context.CancelCall);
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        var context = new InProcessServerCallContext(method.FullName, host, options, _services);
        var channel = Channel.CreateBounded<TResponse>(new BoundedChannelOptions(StreamBufferSize)
        {
            SingleReader = true,
            SingleWriter = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
        if (_handlers.TryGetValue(method.FullName, out var h) && h is ServerStreamingServerMethod<TRequest, TResponse> handler)
        {
            var writer = new ChannelStreamWriter<TResponse>(channel.Writer, context);
            _ = Task.Run(() => RunStreaming(handler, request, writer, channel.Writer, context));
        }
        else
        {
            context.Fail(Unimplemented(method));
            channel.Writer.TryComplete();
        }
        return new AsyncServerStreamingCall<TResponse>(new ChannelStreamReader<TResponse>(channel.Reader, context),
            context.ResponseHeadersAsync, context.GetStatus, context.GetTrailers, context.CancelCall);
    }

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw new NotSupportedException("In-process gRPC supports unary and server-streaming methods only.");

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options) =>
        throw new NotSupportedException("In-process gRPC supports unary and server-streaming methods only.");

    private static RpcException Unimplemented(IMethod method) =>
        new(new Status(StatusCode.Unimplemented, $"Method {method.FullName} is not bound in process."));

    private static async Task<TResponse> RunUnary<TRequest, TResponse>(UnaryServerMethod<TRequest, TResponse> handler, TRequest request, InProcessServerCallContext context)
        where TRequest : class where TResponse : class
    {
        TResponse response;
        try
        {
            response = await handler(request, context).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw context.Fail(e);
        }
        if (context.Complete() is { } failure) throw failure;
        return response;
    }

    private static async Task RunStreaming<TRequest, TResponse>(ServerStreamingServerMethod<TRequest, TResponse> handler, TRequest request,
        ChannelStreamWriter<TResponse> writer, ChannelWriter<TResponse> channel, InProcessServerCallContext context)
        where TRequest : class where TResponse : class
    {
        try
        {
            await handler(request, writer, context).ConfigureAwait(false);
            context.Complete();
        }
        catch (Exception e)
        {
            context.Fail(e);
        }
        finally
        {
            // Items already written are read first; then the reader sees the call's status.
            channel.TryComplete();
        }
    }

    private sealed class Binder(IReadOnlyList<Interceptor> interceptors) : ServiceBinderBase
    {
        public readonly Dictionary<string, object> Handlers = new(StringComparer.Ordinal);

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
        {
            ArgumentNullException.ThrowIfNull(handler);
            var h = handler;
            for (var i = interceptors.Count - 1; i >= 0; i--)
            {
                var interceptor = interceptors[i];
                var next = h;
                h = (request, context) => interceptor.UnaryServerHandler(request, context, next);
            }
            Add(method, h);
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
        {
            ArgumentNullException.ThrowIfNull(handler);
            var h = handler;
            for (var i = interceptors.Count - 1; i >= 0; i--)
            {
                var interceptor = interceptors[i];
                var next = h;
                h = (request, stream, context) => interceptor.ServerStreamingServerHandler(request, stream, context, next);
            }
            Add(method, h);
        }

        // Client-streaming and duplex methods are accepted (so BindService works) but not callable in process.
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler)
        {
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
        {
        }

        private void Add(IMethod method, object handler)
        {
            if (!Handlers.TryAdd(method.FullName, handler)) throw new InvalidOperationException($"Method {method.FullName} is bound twice.");
        }
    }

    private sealed class ChannelStreamWriter<T>(ChannelWriter<T> channel, InProcessServerCallContext context) : IServerStreamWriter<T>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(T message) => WriteAsync(message, CancellationToken.None);

        public async Task WriteAsync(T message, CancellationToken cancellationToken)
        {
            context.HeadersSent();
            var token = context.CancellationToken;
            if (cancellationToken.CanBeCanceled)
            {
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(token, cancellationToken);
                await channel.WriteAsync(message, linked.Token).ConfigureAwait(false);
            }
            else
            {
                await channel.WriteAsync(message, token).ConfigureAwait(false);
            }
        }
    }

    private sealed class ChannelStreamReader<T>(ChannelReader<T> channel, InProcessServerCallContext context) : IAsyncStreamReader<T>
    {
        private T? _current;

        public T Current => _current!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            CancellationTokenSource? linked = null;
            var token = context.CallToken;
            if (cancellationToken.CanBeCanceled)
            {
                linked = CancellationTokenSource.CreateLinkedTokenSource(token, cancellationToken);
                token = linked.Token;
            }
            try
            {
                while (true)
                {
                    if (context.CallToken.IsCancellationRequested) throw context.CancelledException();
                    if (channel.TryRead(out var item))
                    {
                        _current = item;
                        return true;
                    }
                    if (!await channel.WaitToReadAsync(token).ConfigureAwait(false)) break;
                }
            }
            catch (OperationCanceledException)
            {
                throw context.CancelledException();
            }
            finally
            {
                linked?.Dispose();
            }
            if (context.Failure is { } failure) throw failure;
            _current = default;
            return false;
        }
    }
}

/// <summary>The <see cref="ServerCallContext"/> of an in-process call.</summary>
internal sealed class InProcessServerCallContext : ServerCallContext
{
    private static readonly AuthContext EmptyAuth = new(null, new Dictionary<string, List<AuthProperty>>());

    private readonly string _method;
    private readonly string _host;
    private readonly DateTime _deadline;
    private readonly Metadata _requestHeaders;
    private readonly Metadata _responseTrailers = [];
    private readonly CancellationTokenSource _cts = new();
    private readonly CancellationTokenRegistration _parentRegistration;
    private readonly TaskCompletionSource<Metadata> _responseHeaders = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _lock = new();
    private Status _status;
    private bool _completed;
    private bool _deadlineExceeded;
    private Metadata? _finalTrailers;
    private Status? _finalStatus;

    public InProcessServerCallContext(string method, string? host, CallOptions options, IServiceProvider? services)
    {
        _method = method;
        _host = host ?? "localhost";
        _requestHeaders = options.Headers ?? [];
        _deadline = options.Deadline ?? DateTime.MaxValue;
        if (services is not null) UserState[typeof(IServiceProvider)] = services;
        if (options.CancellationToken.CanBeCanceled)
        {
            _parentRegistration = options.CancellationToken.Register(static s => ((InProcessServerCallContext)s!).CancelCall(), this);
        }
        if (options.Deadline is { } deadline && deadline != DateTime.MaxValue)
        {
            var remaining = deadline.ToUniversalTime() - DateTime.UtcNow;
            if (remaining <= TimeSpan.Zero) DeadlineHit();
            else if (remaining < TimeSpan.FromDays(40))
            {
                _deadlineTimer = new Timer(static s => ((InProcessServerCallContext)s!).DeadlineHit(), this, remaining, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private readonly Timer? _deadlineTimer;

    /// <summary>Cancelled when the client cancels or disposes the call, or its deadline passes.</summary>
    public CancellationToken CallToken => _cts.Token;

    public Task<Metadata> ResponseHeadersAsync => _responseHeaders.Task;

    /// <summary>The exception the client gets, once the call failed.</summary>
    public RpcException? Failure { get; private set; }

    protected override string MethodCore => _method;
    protected override string HostCore => _host;
    protected override string PeerCore => "inproc";
    protected override DateTime DeadlineCore => _deadline;
    protected override Metadata RequestHeadersCore => _requestHeaders;
    protected override CancellationToken CancellationTokenCore => _cts.Token;
    protected override Metadata ResponseTrailersCore => _responseTrailers;
    protected override Status StatusCore { get => _status; set => _status = value; }
    protected override WriteOptions? WriteOptionsCore { get; set; }
    protected override AuthContext AuthContextCore => EmptyAuth;

    protected override ContextPropagationToken CreatePropagationTokenCore(ContextPropagationOptions? options) =>
        throw new NotSupportedException("Context propagation is not supported in process.");

    protected override Task WriteResponseHeadersAsyncCore(Metadata responseHeaders)
    {
        if (!_responseHeaders.TrySetResult(responseHeaders)) throw new InvalidOperationException("Response headers can only be sent once per call.");
        return Task.CompletedTask;
    }

    public void HeadersSent() => _responseHeaders.TrySetResult([]);

    public void CancelCall()
    {
        lock (_lock)
        {
            if (_completed) return;
        }
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void DeadlineHit()
    {
        lock (_lock)
        {
            if (_completed) return;
            _deadlineExceeded = true;
        }
        _cts.Cancel();
    }

    public RpcException CancelledException()
    {
        lock (_lock)
        {
            return _deadlineExceeded
                ? new RpcException(new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded"))
                : new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client."));
        }
    }

    /// <summary>The handler returned: the call ends with the status it set (OK unless it set another). Returns the failure, if any.</summary>
    public RpcException? Complete()
    {
        if (_status.StatusCode != StatusCode.OK) return Fail(new RpcException(_status));
        Finish(Status.DefaultSuccess, _responseTrailers, null);
        return null;
    }

    /// <summary>The handler threw: the call ends as a network server would end it. Returns what the client sees.</summary>
    public RpcException Fail(Exception e)
    {
        Status status;
        var trailers = new Metadata();
        foreach (var t in _responseTrailers) trailers.Add(t);
        if (e is RpcException rpc)
        {
            status = rpc.Status;
            foreach (var t in rpc.Trailers) trailers.Add(t);
        }
        else if (e is OperationCanceledException && _cts.IsCancellationRequested)
        {
            status = CancelledException().Status;
        }
        else
        {
            status = new Status(StatusCode.Unknown, "Exception was thrown by handler.", e);
        }
        var failure = new RpcException(status, trailers);
        Finish(status, trailers, failure);
        return failure;
    }

    private void Finish(Status status, Metadata trailers, RpcException? failure)
    {
        lock (_lock)
        {
            if (_completed) return;
            _completed = true;
            _finalStatus = status;
            _finalTrailers = trailers;
            Failure = failure;
        }
        _responseHeaders.TrySetResult([]);
        _parentRegistration.Dispose();
        _deadlineTimer?.Dispose();
    }

    public Status GetStatus()
    {
        lock (_lock)
        {
            return _finalStatus ?? throw new InvalidOperationException("Unable to get the status because the call is not complete.");
        }
    }

    public Metadata GetTrailers()
    {
        lock (_lock)
        {
            return _finalTrailers ?? throw new InvalidOperationException("Can't get the call trailers because the call has not completed successfully.");
        }
    }
}
