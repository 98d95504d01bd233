using Conduit.Common.Storage;
using Grpc.Core;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Conduit.Common.Routing;

/// <summary>
/// What the host needs to know to run one service, in either mode: its key-value families, how to register it,
/// how to map its Matrix endpoints, and how to expose its gRPC service over the network (split mode) or bind
/// it in-process (all-in-one). Each service library exposes one of these beside its AddXxx/MapXxx methods.
/// </summary>
public sealed record ServiceModule(
    Service Service,
    IReadOnlyList<ColumnFamily> Families,
    Action<IServiceCollection> Add,
    Action<IEndpointRouteBuilder> MapHttp,
    Action<IEndpointRouteBuilder>? MapGrpc,
    Action<ServiceBinderBase, IServiceProvider>? BindInProcess);
