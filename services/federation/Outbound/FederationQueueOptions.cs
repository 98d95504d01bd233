namespace Conduit.Federation.Outbound;

/// <summary>
/// Limits and delays of the <see cref="FederationQueue"/>. The defaults are Synapse's figures; tests and the
/// two-instance functional tests use shorter delays.
/// </summary>
public sealed record FederationQueueOptions
{
    public static readonly FederationQueueOptions Default = new();

    /// <summary>PDUs per transaction (spec: at most 50).</summary>
    public int MaxPdusPerTransaction { get; init; } = 50;

    /// <summary>EDUs per transaction (spec: at most 100).</summary>
    public int MaxEdusPerTransaction { get; init; } = 100;

    /// <summary>Transactions in flight at once over all destinations (one per destination at most).</summary>
    public int MaxConcurrentSends { get; init; } = 32;

    /// <summary>A send taking longer than this counts as <see cref="TransactionResult.RetryLater"/>.</summary>
    public TimeSpan SendTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Delays after the first failures of a streak (a short outage), each times the jitter.</summary>
    public IReadOnlyList<TimeSpan> RetryDelays { get; init; } = [TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(16), TimeSpan.FromSeconds(60)];

    /// <summary>The destination's backoff once <see cref="RetryDelays"/> are used up; each further failure multiplies it by 2 × jitter.</summary>
    public TimeSpan BackoffInitial { get; init; } = TimeSpan.FromMinutes(10);

    public TimeSpan BackoffMax { get; init; } = TimeSpan.FromDays(7);

    /// <summary>A destination failing for longer than this drops its queued PDUs and ephemeral EDUs and later sends
    /// only the newest PDU of each room (catch-up).</summary>
    public TimeSpan CatchUpAfter { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Ephemeral EDUs (typing, presence, receipts) kept in memory per destination; the oldest go first.</summary>
    public int MaxEphemeralPerDestination { get; init; } = 1000;

    /// <summary>A factor in [0.8, 1.4) (Synapse's jitter); tests may fix it.</summary>
    public Func<double> Jitter { get; init; } = () => 0.8 + (Random.Shared.NextDouble() * 0.6);
}

/// <summary>What a test (or an admin command) can see of one destination.</summary>
/// <param name="Pending">Queued PDUs and EDUs (durable and ephemeral) plus the rooms awaiting catch-up.</param>
/// <param name="Failures">Failed sends in a row.</param>
/// <param name="RetryAt">When the next attempt may start, while backing off.</param>
/// <param name="CatchingUp">Queued PDUs were dropped; the newest PDU per room goes first when the destination is back.</param>
/// <param name="Waiting">The destination's loop is waiting for <paramref name="RetryAt"/> (or a wake-up).</param>
/// <param name="Sending">A transaction is in flight.</param>
public sealed record DestinationStatus(string Destination, int Pending, int Failures, DateTimeOffset? RetryAt, bool CatchingUp, bool Waiting, bool Sending);

/// <summary>
/// A destination as the admin API shows it (Synapse's "Federation API" fields): the last failed attempt and the delay
/// after it (0 when not failing), when the current failures began (null when not failing), the newest queue sequence
/// number delivered since the start (null if none), and what is queued for it.
/// </summary>
public sealed record DestinationInfo(string Destination, long RetryLastTs, long RetryInterval, long? FailureTs, ulong? LastSuccessfulSeq,
    int QueuedPdus, int QueuedEdus, int Failures, bool CatchingUp);
