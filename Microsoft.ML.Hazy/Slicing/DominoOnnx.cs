using Microsoft.ML.Hazy.Onnx;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>What the scoring graph reads and writes.</summary>
internal sealed record DominoGraphSpec(
    string Embedding,
    string LabelInput,
    DominoLabelForm LabelForm,
    string PredictionInput,
    bool PredictionIsVector,
    bool UseLabelsAndPredictions,
    string ProbabilitiesOutput,
    string SliceOutput);

/// <summary>
/// The Domino posterior as an ONNX graph, computed in double: PCA projection, the diagonal Gaussian log-densities,
/// γ- and γ̂-weighted categorical terms, a softmax over components and the selected slices' columns.
/// </summary>
internal static class DominoOnnx
{
    private const long OnnxDouble = 11;
    private const long OnnxFloat = 1;
    private const double Epsilon = 2.220446049250313e-16;

    /// <summary>
    /// The graph. Per row (what ML.NET's <c>OnnxTransformer</c> runs) the inputs are 1-D and the outputs are the slice
    /// probabilities [slices] and the slice index [1]; batched, every input and output has a leading batch dimension. A row
    /// whose embedding is not finite gets NaN probabilities and slice index −1.
    /// </summary>
    public static byte[] Build(DominoModelParameters model, DominoGraphSpec spec, bool batched)
    {
        var g = new OnnxGraphBuilder("hazy_domino");
        int k = model.NumberOfComponents, m = model.Dimensions, c = model.Classes, d = model.EmbeddingSize;
        var mixture = model.Mixture;

        string Input(string name, long width) => batched
            ? g.AddInput(name, OnnxElementType.Float, null, width)
            : g.Node("Unsqueeze", new[] { g.AddInput(name, OnnxElementType.Float, width), g.Int64s(0) });
        string ToDouble(string v) => g.Node("Cast", new[] { v }, OnnxAttribute.Int("to", OnnxDouble));
        string Constant(string hint, double[] values, params long[] dims) => g.AddInitializer(hint, values, dims);

        string z = ToDouble(Input(spec.Embedding, d));
        if (model.Pca is { } pca)
        {
            var transposed = new double[d * m];
            for (int comp = 0; comp < m; comp++)
                for (int j = 0; j < d; j++)
                    transposed[j * m + comp] = pca.Components[comp * d + j];
            z = g.Node("MatMul", new[] { g.Node("Sub", new[] { z, Constant("pca_mean", pca.Mean, d) }), Constant("pca_components", transposed, d, m) });
        }

        // log π_s N(z; μ_s, Σ_s) = const_s − ½ Σ_j (z_j − μ_sj)² / σ²_sj.
        var diff = g.Node("Sub", new[] { g.Node("Unsqueeze", new[] { z, g.Int64s(1) }), Constant("means", mixture.Means, k, m) });
        var weighted = g.Node("Mul", new[] { g.Node("Mul", new[] { diff, diff }), Constant("precisions", mixture.Precisions(), k, m) });
        var distance = g.Node("ReduceSum", new[] { weighted, g.Int64s(2) }, OnnxAttribute.Int("keepdims", 0));
        var logProb = g.Node("Add", new[] { g.Node("Mul", new[] { distance, Constant("minus_half", new[] { -0.5 }) }), Constant("log_constants", mixture.LogConstants(), k) });

        if (spec.UseLabelsAndPredictions)
        {
            if (model.LabelWeight != 0)
            {
                var y = LabelDistribution(g, Input(spec.LabelInput, spec.LabelForm == DominoLabelForm.Key ? c : 1), spec.LabelForm, c, ToDouble, Constant);
                logProb = AddCategorical(g, logProb, y, mixture.LabelProbabilities, k, c, model.LabelWeight, "label", Constant);
            }
            if (model.PredictionWeight != 0)
            {
                var input = Input(spec.PredictionInput, spec.PredictionIsVector ? c : 1);
                var yHat = spec.PredictionIsVector ? ToDouble(input) : BinaryDistribution(g, ToDouble(input), Constant);
                logProb = AddCategorical(g, logProb, yHat, mixture.PredictionProbabilities, k, c, model.PredictionWeight, "prediction", Constant);
            }
        }

        var resp = g.Node("Exp", new[] { g.Node("LogSoftmax", new[] { logProb }, OnnxAttribute.Int("axis", 1)) });
        var selected = g.Node("Gather", new[] { resp, g.AddInitializer("slice_components", model.SliceComponentIndices.Select(i => (long)i).ToArray(), model.SliceComponentIndices.Length) },
            OnnxAttribute.Int("axis", 1));
        var probabilities = g.Node("Cast", new[] { selected }, OnnxAttribute.Int("to", OnnxFloat));
        var slice = g.Node("ArgMax", new[] { selected }, OnnxAttribute.Int("axis", 1), OnnxAttribute.Int("keepdims", 1));
        // A NaN or infinite embedding makes every probability NaN, where ArgMax would still name slice 0; index −1 maps to no key.
        var undefined = g.Node("IsNaN", new[] { g.Node("ReduceSum", new[] { selected, g.Int64s(1) }, OnnxAttribute.Int("keepdims", 1)) });
        slice = g.Node("Where", new[] { undefined, g.Int64s(-1), slice });

        int slices = model.SliceComponentIndices.Length;
        if (batched)
        {
            g.AddOutput(probabilities, spec.ProbabilitiesOutput, OnnxElementType.Float, null, slices);
            g.AddOutput(slice, spec.SliceOutput, OnnxElementType.Int64, null, 1);
        }
        else
        {
            g.AddOutput(g.Node("Squeeze", new[] { probabilities, g.Int64s(0) }), spec.ProbabilitiesOutput, OnnxElementType.Float, slices);
            g.AddOutput(g.Node("Squeeze", new[] { slice, g.Int64s(0) }), spec.SliceOutput, OnnxElementType.Int64, 1);
        }
        return g.ToBytes($"Exported by Microsoft.ML.Hazy: Domino slicer, {k} components, {slices} slices, input '{spec.Embedding}' of {d} values.");
    }

    // γ log(y_i · p_s + ε) for every component: a [batch, c] × [c, k] product.
    private static string AddCategorical(OnnxGraphBuilder g, string logProb, string distribution, double[] probabilities, int k, int c, double weight,
        string hint, Func<string, double[], long[], string> constant)
    {
        var transposed = new double[c * k];
        for (int s = 0; s < k; s++)
            for (int j = 0; j < c; j++)
                transposed[j * k + s] = probabilities[s * c + j];
        var likelihood = g.Node("MatMul", new[] { distribution, constant(hint + "_probabilities", transposed, new long[] { c, k }) });
        var log = g.Node("Log", new[] { g.Node("Add", new[] { likelihood, constant("epsilon", new[] { Epsilon }, Array.Empty<long>()) }) });
        return g.Node("Add", new[] { logProb, g.Node("Mul", new[] { log, constant(hint + "_weight", new[] { weight }, Array.Empty<long>()) }) });
    }

    private static string LabelDistribution(OnnxGraphBuilder g, string input, DominoLabelForm form, int c,
        Func<string, string> toDouble, Func<string, double[], long[], string> constant)
    {
        if (form == DominoLabelForm.Key)
            return toDouble(input);
        if (c == 2)
            return BinaryDistribution(g, toDouble(input), constant);
        // One-hot of a class index: [y == 0, ..., y == c − 1].
        var classes = g.AddInitializer("class_indices", Enumerable.Range(0, c).Select(i => (float)i).ToArray(), c);
        return toDouble(g.Node("Equal", new[] { input, classes }));
    }

    // [1 − q, q] from a [batch, 1] probability.
    private static string BinaryDistribution(OnnxGraphBuilder g, string q, Func<string, double[], long[], string> constant) =>
        g.Node("Concat", new[] { g.Node("Sub", new[] { constant("one", new[] { 1.0 }, Array.Empty<long>()), q }), q }, OnnxAttribute.Int("axis", 1));
}
