using Conduit.Edge;
using Activity = Conduit.Edge.MemoryTrimmer.Activity;
using Step = Conduit.Edge.MemoryTrimmer.Step;

namespace Conduit.Functional.Tests;

/// <summary>When the edge's MemoryTrimmer gives the C heap's free pages back: after work, once quiet (collecting first at
/// most once a minute); never while busy.</summary>
public class MemoryTrimmerTests
{
    static readonly TimeSpan Recent = TimeSpan.FromSeconds(20);
    static readonly TimeSpan Long = TimeSpan.FromMinutes(2);

    static bool ShouldTrim(Activity now, Activity atCheck, Activity atTrim, TimeSpan sinceTrim) =>
        MemoryTrimmer.Decide(now, atCheck, atTrim, sinceTrim, Recent) != Step.None;

    [Fact]
    public void Trims_once_the_server_turns_quiet_after_work()
    {
        var atTrim = new Activity(10_000_000, 4_000);
        // A registration and a /sync allocated 2 MB, then nothing happened over the last check.
        var atCheck = new Activity(12_000_000, 4_000);
        Assert.True(ShouldTrim(new Activity(12_010_000, 4_000), atCheck, atTrim, Recent));
        // The JIT recompiling hot methods is work too, and leaves freed arenas.
        Assert.True(ShouldTrim(new Activity(10_010_000, 4_020), new Activity(10_005_000, 4_010), atTrim, Recent));
    }

    [Fact]
    public void Does_not_trim_while_busy_or_when_nothing_happened()
    {
        var atTrim = new Activity(10_000_000, 4_000);
        // Busy: 40 MB allocated since the last check.
        Assert.False(ShouldTrim(new Activity(60_000_000, 4_000), new Activity(20_000_000, 4_000), atTrim, Recent));
        Assert.False(ShouldTrim(new Activity(60_000_000, 4_500), new Activity(20_000_000, 4_100), atTrim, Recent));
        // Idle since the last trim: timers' few KB are not work worth a trim.
        Assert.False(ShouldTrim(new Activity(10_040_000, 4_000), new Activity(10_020_000, 4_000), atTrim, Recent));
    }

    [Fact]
    public void Trims_every_few_minutes_regardless() =>
        Assert.True(ShouldTrim(new Activity(90_000_000, 4_000), new Activity(50_000_000, 4_000), new Activity(1, 1), TimeSpan.FromMinutes(5)));

    [Fact]
    public void Collects_first_when_quiet_after_work_at_most_once_a_minute()
    {
        var atTrim = new Activity(10_000_000, 4_000);
        var atCheck = new Activity(12_000_000, 4_000);
        var now = new Activity(12_010_000, 4_000);
        Assert.Equal(Step.CollectAndTrim, MemoryTrimmer.Decide(now, atCheck, atTrim, Recent, Long));
        Assert.Equal(Step.Trim, MemoryTrimmer.Decide(now, atCheck, atTrim, Recent, Recent));
        // Busy: the periodic trim goes on, without a collection however long since the last.
        Assert.Equal(Step.Trim, MemoryTrimmer.Decide(new Activity(90_000_000, 4_000), new Activity(50_000_000, 4_000), atTrim, TimeSpan.FromMinutes(5), Long));
        Assert.Equal(Step.None, MemoryTrimmer.Decide(new Activity(90_000_000, 4_000), new Activity(50_000_000, 4_000), atTrim, Recent, Long));
    }
}
