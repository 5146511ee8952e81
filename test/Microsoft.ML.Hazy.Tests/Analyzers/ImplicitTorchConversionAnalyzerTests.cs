using System.Collections.Immutable;
using Hazy.Analyzers;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Diagnostics;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Analyzers;

/// <summary>HAZY001–003 compiled in process against TorchSharp: each line of the snippet expects the rules in its trailing comment.</summary>
public class ImplicitTorchConversionAnalyzerTests
{
    private const string Snippet = """
        using TorchSharp;
        using static TorchSharp.torch;

        static class Snippet
        {
            static Tensor NumberOperand(Tensor t) => t * 2.0; // HAZY001
            static Tensor NumberArgument(Tensor t) => t.mul(0.5); // HAZY001
            static Tensor NumberComparison(Tensor t, double p) => t.lt(1 - p); // HAZY001
            static Tensor ExplicitScalar(Tensor t) { using var two = 2.0.ToScalar(); return t * two; } //
            static Tensor ScalarOwnedByUsing(Tensor t) { using Scalar two = 2.0; return t.mul(two); } //
            static Tensor NumberToTensor() { Tensor t = 3.0; return t; } // HAZY002
            static Tensor TensorSum(Tensor a, Tensor b) => a + b; // HAZY003
            static Tensor SumWithAlpha(Tensor a, Tensor b) { using var one = 1.ToScalar(); return a.add(b, one); } //
            static Tensor Square(Tensor a) => a.square(); // HAZY003
            static Tensor Difference(Tensor a, Tensor b) => a - b; //
        }
        """;

    [Test]
    public async Task ImplicitScalarsAndTensorsAreReportedAndExplicitDisposedOnesAreNot()
    {
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Append(typeof(TorchSharp.Scalar).Assembly.Location)
            .Distinct()
            .Select(path => MetadataReference.CreateFromFile(path));
        var tree = CSharpSyntaxTree.ParseText(Snippet, new CSharpParseOptions(LanguageVersion.Latest));
        var compilation = CSharpCompilation.Create("Snippet", new[] { tree }, references, new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));
        Assert.That(compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error), Is.Empty, "the snippet compiles");

        var diagnostics = await compilation.WithAnalyzers(ImmutableArray.Create<DiagnosticAnalyzer>(new ImplicitTorchConversionAnalyzer()))
            .GetAnalyzerDiagnosticsAsync();

        var lines = Snippet.Split('\n');
        for (int line = 0; line < lines.Length; line++)
        {
            int comment = lines[line].LastIndexOf("//", StringComparison.Ordinal);
            if (comment < 0)
                continue;
            var expected = lines[line][(comment + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var reported = diagnostics.Where(d => d.Location.GetLineSpan().StartLinePosition.Line == line).Select(d => d.Id);
            Assert.That(reported, Is.EquivalentTo(expected), lines[line].Trim());
        }
        Assert.That(diagnostics.All(d => d.Severity == DiagnosticSeverity.Error), Is.True);
    }
}
