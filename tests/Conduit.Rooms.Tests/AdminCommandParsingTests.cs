using Conduit.Rooms.Admin;

namespace Conduit.Rooms.Tests;

/// <summary>How the admin room reads a message: which ones are commands, times, and a code block's input.</summary>
public sealed class AdminCommandParsingTests
{
    const string Bot = "@conduit:example.org";

    [Theory]
    [InlineData("!admin users list", true)]
    [InlineData("  !admin help", true)]
    [InlineData("!admin", true)]
    [InlineData("!ADMIN rooms list", true)]
    [InlineData("@conduit:example.org: list-local-users", true)]
    [InlineData("Conduit: list-rooms", true)]
    [InlineData("!administrator please", false)]
    [InlineData("hello !admin users list", false)]
    [InlineData("@conduit:other.org: list-rooms", false)]
    [InlineData("conduit is great", false)]
    public void A_message_is_a_command_only_when_it_starts_with_a_prefix(string body, bool expected)
        => Assert.Equal(expected, AdminCommands.IsCommand(body, Bot));

    [Fact]
    public void Times_are_milliseconds_dates_or_ages()
    {
        Assert.Equal(1_700_000_000_000, AdminCommands.Time("1700000000000"));
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 0, 0, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), AdminCommands.Time("2026-11-30"));
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 12, 30, 0, TimeSpan.Zero).ToUnixTimeMilliseconds(), AdminCommands.Time("2026-11-30T12:30:00Z"));
        var thirtyDaysAgo = DateTimeOffset.UtcNow.AddDays(-30).ToUnixTimeMilliseconds();
        Assert.InRange(AdminCommands.Time("30d"), thirtyDaysAgo - 5000, thirtyDaysAgo + 5000);
        var inTwoHours = DateTimeOffset.UtcNow.AddHours(2).ToUnixTimeMilliseconds();
        Assert.InRange(AdminCommands.Time("2h", future: true), inTwoHours - 5000, inTwoHours + 5000);
        Assert.Throws<CommandError>(() => AdminCommands.Time("yesterday"));
        Assert.Throws<CommandError>(() => AdminCommands.Time("30x"));
    }

    [Fact]
    public void Input_comes_from_a_code_block_after_the_command_line()
    {
        Assert.Equal(("!admin debug sign-json", "{\"a\": 1}"), AdminCommands.SplitBlock("!admin debug sign-json\n```json\n{\"a\": 1}\n```"));
        Assert.Equal(("@conduit:example.org: verify-json", "{\"b\":2}"), AdminCommands.SplitBlock("@conduit:example.org: verify-json\n```\n{\"b\":2}\n```"));
        Assert.Equal(("purge-media", "mxc://a/b\nmxc://a/c"), AdminCommands.SplitBlock("purge-media\n```\nmxc://a/b\nmxc://a/c\n```"));
        Assert.Equal(("!admin users list", null), AdminCommands.SplitBlock("!admin users list"));
    }
}
