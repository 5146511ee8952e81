using System.Diagnostics;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.SamplesSupport;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Samples;

/// <summary>
/// The samples' command line, run as a process: mistakes end with a one-line error and exit code 2 before any data is
/// read or any model trained, and a missing data set ends with a one-line explanation, never a stack trace.
/// </summary>
public sealed class SamplesCommandLineTests
{
    private static (int ExitCode, string Output, string Error) RunSample(IDictionary<string, string>? environment, params string[] args)
    {
        // The samples build beside the tests: bin/<configuration>/<framework> in each project.
        var testDirectory = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        var root = testDirectory;
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Hazy.ML.sln")))
            root = root.Parent;
        Assert.That(root, Is.Not.Null, "repository root");
        var dll = Path.Combine(root!.FullName, "samples", "Hazy.Samples", "bin", testDirectory.Parent!.Name, testDirectory.Name, "Hazy.Samples.dll");
        Assert.That(File.Exists(dll), Is.True, $"{dll} is built");

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root.FullName };
        start.ArgumentList.Add(dll);
        foreach (var arg in args)
            start.ArgumentList.Add(arg);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
            start.Environment[name] = value;
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"'{string.Join(" ", args)}' still ran after 60 s");
        }
        return (process.ExitCode, output.Result, error.Result);
    }

    [TestCase("monarch", "--rows", "abc", "--rows: expected a positive integer, got \"abc\".")]
    [TestCase("monarch", "--rows", "0", "--rows: expected a positive integer, got \"0\".")]
    [TestCase("explain", "--epochs", "2.5", "--epochs: expected a positive integer, got \"2.5\".")]
    [TestCase("s4d", "--threads", "-1", "--threads: expected a positive integer, got \"-1\".")]
    [TestCase("domino", "--setting-model", "forest", "--setting-model: expected one of cnn, linear, got \"forest\".")]
    public void BadOptionValueGivesOneLineErrorAndTheCommandsUsage(string command, string option, string value, string message)
    {
        var (exitCode, output, error) = RunSample(null, command, option, value);
        Assert.That(exitCode, Is.EqualTo(2), error);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[0].TrimEnd(), Is.EqualTo("error: " + message));
        Assert.That(error, Does.Contain($"-- {command} [options]").And.Contain(option + " "));
        Assert.That(error + output, Does.Not.Contain("   at ").And.Not.Contain("Exception"));
        Assert.That(output, Is.Empty, "nothing ran");
    }

    [Test]
    public void DominoWithOnlyTheShippedSubsetExplainsInOneLine()
    {
        var subset = RepositoryFolders.FindUpwards(FashionMnistData.SubsetRelativePath);
        Assert.That(subset, Is.Not.Null, "the repository ships the subset");
        var output = Directory.CreateTempSubdirectory("hazy-domino-").FullName;
        try
        {
            var (exitCode, stdout, error) = RunSample(new Dictionary<string, string> { [FashionMnistData.DirectoryVariable] = subset! },
                "domino", "--output", output);
            Assert.That(exitCode, Is.EqualTo(1), error);
            Assert.That(error.Trim().Split('\n'), Has.Length.EqualTo(1), error);
            Assert.That(error, Does.StartWith("error: ").And.Contain("full Fashion-MNIST").And.Contain(subset!));
            Assert.That(error + stdout, Does.Not.Contain("   at ").And.Not.Contain("Exception"));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
