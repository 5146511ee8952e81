using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// The interpretation benchmark of Thomas, Ré and Poldrack (2022) in 2-D: train the CNN on Fashion-MNIST, attribute
/// correctly classified test images with every method, and measure faithfulness (occlude the top-φ pixels), plausibility
/// (correlation with the class-contrast map, what a GLM with class regressors estimates) and the sanity checks
/// (similarity after randomising the weights and after training on permuted labels). Writes <c>metrics.json</c> and
/// <c>maps.png</c>.
/// </summary>
internal static class ExplainSample
{
    private const int Side = FashionMnist.ImageSize;
    private const int Pixels = Side * Side;

    private sealed record MethodMetrics(string Method, double FaithfulnessArea, double? FirstFractionAtChance, double[] FaithfulnessCurve,
        double PlausibilityPearson, double PlausibilityMutualInformation, double RandomWeightsSimilarity, double RandomWeightsSpearman,
        double PermutedLabelsSimilarity, double PermutedLabelsSpearman, double MillisecondsPerImage, int AllZeroMaps);

    public static int Run(SampleContext context)
    {
        var total = Stopwatch.StartNew();
        var outputDirectory = context.OutputDirectory;
        Directory.CreateDirectory(outputDirectory);
        int images = context.Integer("images", 500);
        int epochs = context.Integer("epochs", 3);
        TorchSharp.torch.set_num_threads(context.Integer("threads", 1));
        AnsiConsole.Write(new Rule("[bold]Interpretation[/]: attribution methods on a Fashion-MNIST CNN").LeftJustified());

        var mlContext = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(mlContext);
        AnsiConsole.MarkupLine(Invariant($"Data: {Markup.Escape(source.Directory)} ({(source.IsSubset ? "subset" : "full")}); {images} correctly classified test images; libtorch threads {TorchSharp.torch.get_num_threads()}."));

        CnnTrainer.Options Options() => new()
        {
            Height = Side,
            Width = Side,
            NumberOfEpochs = epochs,
            BatchSize = 64,
            LearningRate = 2e-3,
            CancellationToken = context.CancellationToken,
        };
        var clock = Stopwatch.StartNew();
        using var model = mlContext.MulticlassClassification.Trainers.HazyCnn(Options()).Fit(source.Train);
        double trainSeconds = clock.Elapsed.TotalSeconds;
        var scoredTest = model.Transform(source.Test);
        double accuracy = mlContext.MulticlassClassification.Evaluate(scoredTest).MicroAccuracy;
        AnsiConsole.MarkupLine(Invariant($"CNN [[{string.Join(", ", Options().Filters)}]] trained for {epochs} epochs in {trainSeconds:F0} s: test accuracy {accuracy:F4}."));

        // The sanity check's second model: the same CNN trained on permuted labels.
        clock.Restart();
        using var permuted = mlContext.MulticlassClassification.Trainers.HazyCnn(Options()).Fit(PermuteLabels(mlContext, source.Train, seed: 2));
        AnsiConsole.MarkupLine(Invariant($"Permuted-label CNN trained in {clock.Elapsed.TotalSeconds:F0} s (test accuracy {mlContext.MulticlassClassification.Evaluate(permuted.Transform(source.Test)).MicroAccuracy:F3})."));

        // The first `images` correctly classified test images.
        var features = scoredTest.GetColumn<float[]>("Features").ToArray();
        var labels = scoredTest.GetColumn<uint>("Label").Select(k => (int)k - 1).ToArray();
        var predicted = scoredTest.GetColumn<uint>("PredictedLabel").Select(k => (int)k - 1).ToArray();
        var kept = Enumerable.Range(0, labels.Length).Where(i => labels[i] == predicted[i]).Take(images).ToArray();
        images = kept.Length;
        var x = kept.SelectMany(i => features[i]).ToArray();
        var y = kept.Select(i => labels[i]).ToArray();
        var score = new TorchScoreFunction(model.Network, Pixels);
        var permutedScore = new TorchScoreFunction(permuted.Network, Pixels);

        // Baselines as in the paper: zeros and the mean test image (IG, DeepLift), 50 random test images (DeepLiftShap).
        // SmoothGrad's σ is 0.15 of the pixel range: the paper's σ = 1 was on standardised BOLD maps, and Fashion-MNIST pixels are in [0, 1].
        var methods = new List<(string Name, Func<ITransformer, IScoreFunction, IAttributionMethod> Create)>();
        foreach (var method in Enum.GetValues<GradientMethod>())
        {
            methods.Add((method.ToString(), (m, _) => mlContext.Hazy().Interpretation
                .Attribution(m, new GradientAttributionOptions { Method = method, SmoothGradSigma = 0.15 })
                .Fit(source.Test).Method));
        }
        methods.Add(("GuidedGradCam (after ReLU)", (m, _) => mlContext.Hazy().Interpretation
            .Attribution(m, new GradientAttributionOptions { Method = GradientMethod.GuidedGradCam, GradCamAfterActivation = true }).Fit(source.Test).Method));
        // LRP seeded with f_c(x) instead of Zennit's one-hot target: the same maps times f_c(x), sign-flipped where the logit is negative.
        methods.Add(("Lrp (f_c(x) seed)", (m, _) => mlContext.Hazy().Interpretation
            .Attribution(m, new GradientAttributionOptions { Method = GradientMethod.Lrp, LrpScaleByOutput = true }).Fit(source.Test).Method));
        methods.Add(("Occlusion", (_, s) => new OcclusionAttribution(s, new OcclusionAttribution.Options { Shape = [1, Side, Side], WindowShape = [1, 4, 4], Strides = [1, 2, 2] })));
        var superpixels = Enumerable.Range(0, Pixels).Select(p => p / Side / 4 * (Side / 4) + p % Side / 4).ToArray();
        methods.Add(("KernelSHAP", (_, s) => new KernelShapAttribution(s, new KernelShapAttribution.Options { NumberOfEvaluations = 512, FeatureGroups = superpixels, Seed = 3 })));

        var results = new List<MethodMetrics>();
        var gridMaps = new List<float>();
        const int gridImages = 6;
        foreach (var (name, create) in methods)
        {
            context.CancellationToken.ThrowIfCancellationRequested();
            var attribution = create(model, score);
            clock.Restart();
            var maps = attribution.Attribute(x, images, y);
            double ms = clock.Elapsed.TotalMilliseconds / images;
            var faithfulness = Faithfulness.Evaluate(score, x, images, y, maps);
            var plausibility = Plausibility.Evaluate(maps, x, images, y, FashionMnist.ClassNames.Count, seed: 1);
            var randomMaps = attribution is GradientAttribution gradient
                ? gradient.AttributeWithRandomWeights(x, images, y, seed: 4)
                : ModelRandomization.WithRandomWeights(model.Network, 4, () => attribution.Attribute(x, images, y));
            var random = SanityChecks.Compare(maps, randomMaps, images, seed: 1);
            var permutedMaps = create(permuted, permutedScore).Attribute(x, images, y);
            var relabelled = SanityChecks.Compare(maps, permutedMaps, images, seed: 1);
            results.Add(new MethodMetrics(name, faithfulness.AreaUnderCurve, faithfulness.FirstFractionAtChance, faithfulness.Accuracies.ToArray(),
                plausibility.MeanPearson, plausibility.MeanMutualInformation, random.PearsonOfAbsolute, random.SpearmanOfAbsolute,
                relabelled.PearsonOfAbsolute, relabelled.SpearmanOfAbsolute, ms,
                Enumerable.Range(0, images).Count(i => maps.AsSpan(i * Pixels, Pixels).IndexOfAnyExcept(0f) < 0)));
            gridMaps.AddRange(maps.AsSpan(0, gridImages * Pixels).ToArray());
            AnsiConsole.MarkupLine(Invariant($"  {Markup.Escape(name),-26} {ms,8:F2} ms/image  faithfulness area {faithfulness.AreaUnderCurve:F3}  plausibility r {plausibility.MeanPearson:F3}"));
        }

        var table = new Table().Title(Invariant($"{images} correctly classified test images")).AddColumn("Method")
            .AddColumn(new TableColumn("Faithfulness area ↓").RightAligned()).AddColumn(new TableColumn("φ at chance ↓").RightAligned())
            .AddColumn(new TableColumn("Plausibility r ↑").RightAligned()).AddColumn(new TableColumn("MI ↑").RightAligned())
            .AddColumn(new TableColumn("Random-weights r ↓").RightAligned()).AddColumn(new TableColumn("Permuted-labels r ↓").RightAligned())
            .AddColumn(new TableColumn("ms / image").RightAligned()).AddColumn(new TableColumn("zero maps").RightAligned());
        foreach (var r in results)
        {
            table.AddRow(r.Method, Invariant($"{r.FaithfulnessArea:F3}"), r.FirstFractionAtChance is { } f ? Invariant($"{f:P1}") : "never",
                Invariant($"{r.PlausibilityPearson:F3}"), Invariant($"{r.PlausibilityMutualInformation:F3}"),
                Invariant($"{r.RandomWeightsSimilarity:F3}"), Invariant($"{r.PermutedLabelsSimilarity:F3}"), Invariant($"{r.MillisecondsPerImage:F2}"), r.AllZeroMaps.ToString(CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);

        // The paper's finding is a trade-off: the more faithful a method (smaller area), the less plausible. A positive
        // rank correlation between area and plausibility across methods reproduces it.
        double tradeOff = SpearmanAcross(results.Select(r => r.FaithfulnessArea).ToArray(), results.Select(r => r.PlausibilityPearson).ToArray());
        var paperMethods = results.Where(r => Enum.TryParse<GradientMethod>(r.Method, out _)).ToArray();
        double paperTradeOff = SpearmanAcross(paperMethods.Select(r => r.FaithfulnessArea).ToArray(), paperMethods.Select(r => r.PlausibilityPearson).ToArray());
        string Verdict(double rho) => rho > 0 ? "the trade-off reproduces: more faithful methods are less plausible" : "no trade-off";
        AnsiConsole.MarkupLine(Invariant($"Spearman ρ between faithfulness area and plausibility r: {paperTradeOff:F2} over the paper's {paperMethods.Length} methods ({Verdict(paperTradeOff)}), {tradeOff:F2} with occlusion and KernelSHAP ({Verdict(tradeOff)})."));

        var gridPath = Path.Combine(outputDirectory, "maps.png");
        var transposed = new float[gridImages * results.Count * Pixels];
        for (int m = 0; m < results.Count; m++)
        for (int i = 0; i < gridImages; i++)
            gridMaps.CopyTo(m * gridImages * Pixels + i * Pixels, transposed, (i * results.Count + m) * Pixels, Pixels);
        AttributionHeatMap.SaveGrid(gridPath, transposed, gridImages, results.Count, Side, Side, x.AsSpan(0, gridImages * Pixels), scale: 3, gap: 2);

        var metricsPath = Path.Combine(outputDirectory, "metrics.json");
        var report = new
        {
            Dataset = source.Directory,
            source.IsSubset,
            Model = new { Kind = "CNN", Filters = Options().Filters, Epochs = epochs, TestAccuracy = accuracy, TrainSeconds = Math.Round(trainSeconds, 1) },
            Images = images,
            FaithfulnessFractions = Faithfulness.DefaultFractions,
            GridColumns = results.Select(r => r.Method).Prepend("input").ToArray(),
            TradeOffSpearman = tradeOff,
            TradeOffSpearmanPaperMethods = paperTradeOff,
            Methods = results,
            TorchThreads = TorchSharp.torch.get_num_threads(),
            TotalSeconds = Math.Round(total.Elapsed.TotalSeconds, 1),
        };
        File.WriteAllText(metricsPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(metricsPath)}[/] and [blue]{Markup.Escape(gridPath)}[/] (rows: images; columns: input, then {string.Join(", ", results.Select(r => r.Method))}).");
        AnsiConsole.MarkupLine(Invariant($"Done in {total.Elapsed.TotalSeconds:F0} s."));
        return 0;
    }

    /// <summary>The data with its labels shuffled across rows (the label-randomisation sanity check), keyed in the original class order.</summary>
    private static IDataView PermuteLabels(MLContext mlContext, IDataView data, int seed)
    {
        var labels = data.GetColumn<uint>("Label").ToArray();
        new Random(seed).Shuffle(labels);
        var features = data.GetColumn<float[]>("Features").ToArray();
        var rows = features.Select((f, i) => new LabelledImage { Features = f, ClassName = FashionMnist.ClassNames[(int)labels[i] - 1] }).ToArray();
        var view = mlContext.Data.LoadFromEnumerable(rows);
        var classOrder = mlContext.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(name => new LabelledImage { ClassName = name, Features = new float[Pixels] }));
        return mlContext.Transforms.Conversion.MapValueToKey("Label", nameof(LabelledImage.ClassName), keyData: mlContext.Transforms.SelectColumns(nameof(LabelledImage.ClassName)).Fit(classOrder).Transform(classOrder))
            .Fit(view).Transform(view);
    }

    private sealed class LabelledImage
    {
        public string ClassName { get; set; } = "";

        [VectorType(Pixels)]
        public float[] Features { get; set; } = [];
    }

    /// <summary>Spearman ρ between two per-method columns of the results.</summary>
    private static double SpearmanAcross(double[] a, double[] b) =>
        MapSimilarity.Spearman(a.Select(v => (float)v).ToArray(), b.Select(v => (float)v).ToArray());

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
