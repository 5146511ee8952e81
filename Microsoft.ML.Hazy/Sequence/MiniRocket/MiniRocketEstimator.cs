using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Hazy.Sequence.MiniRocket;

/// <summary>
/// Fits a MiniRocket featurizer (Dempster, Schmidt and Webb, "MiniRocket", KDD 2021): 84 fixed kernels of length 9 with weights
/// −1 and 2, dilated to cover the series, whose biases are quantiles of the convolution of random training rows; each feature is
/// the proportion of positive values (PPV) of one (dilation, kernel, bias). Feed the features to a stock linear trainer, for
/// example <c>mlContext.MulticlassClassification.Trainers.LbfgsMaximumEntropy()</c>. Managed code only; no libtorch.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type |
/// | -- | -- |
/// | input (`Features`) | vector of Single: L time steps of C channels, time-major (value `t·C + c` is channel c at step t); known size, or variable size for series of different lengths (a whole number of steps per row) |
/// | output (`Features`) | known-size vector of Single: 84 · ⌊<see cref="Options.NumberOfFeatures"/> / 84⌋ values in [0, 1] |
///
/// The dilations are chosen for the longest training row (or <see cref="Options.MaximumLength"/>); a shorter row is convolved over
/// its own steps with zeros outside it, so rows of any length score. With several channels each (dilation, kernel) sums the
/// convolutions of a random subset of channels, as the multivariate MiniRocket does. Fitting is deterministic for a
/// <see cref="Options.Seed"/>.
///
/// The fitted transformer cannot be saved with <c>mlContext.Model.Save</c> (ML.NET keeps the persistence of third-party
/// transformers internal and MiniRocket has no ONNX export yet): <c>Save</c> throws <see cref="NotSupportedException"/>.
/// ]]></format>
/// </remarks>
public sealed class MiniRocketEstimator : IEstimator<MiniRocketTransformer>
{
    /// <summary>Options of the MiniRocket featurizer.</summary>
    public sealed class Options
    {
        /// <summary>The defaults, used by these options and by the catalog's short overload.</summary>
        public static class Defaults
        {
            /// <summary>Features requested: the reference's 10,000 (rounded down to a multiple of 84: 9,996).</summary>
            public const int NumberOfFeatures = 10_000;

            /// <summary>The most dilations per kernel: the reference's 32.</summary>
            public const int MaximumDilationsPerKernel = 32;

            /// <summary>Values per time step: 1.</summary>
            public const int Channels = 1;
        }

        /// <summary>The output column.</summary>
        public string OutputColumnName { get; set; } = DefaultColumnNames.Features;

        /// <summary>The input column; null reads <see cref="OutputColumnName"/>.</summary>
        public string? InputColumnName { get; set; }

        /// <summary>Values per time step.</summary>
        public int Channels { get; set; } = Defaults.Channels;

        /// <summary>Features requested; rounded down to a multiple of 84, at least 84.</summary>
        public int NumberOfFeatures { get; set; } = Defaults.NumberOfFeatures;

        /// <summary>The most distinct dilations per kernel.</summary>
        public int MaximumDilationsPerKernel { get; set; } = Defaults.MaximumDilationsPerKernel;

        /// <summary>The series length the dilations are chosen for; 0 takes the longest training row.</summary>
        public int MaximumLength { get; set; }

        /// <summary>The seed of the channel subsets and of the rows the biases are drawn from; null draws one from the <see cref="MLContext"/>.</summary>
        public int? Seed { get; set; }

        internal void Check()
        {
            Require(!string.IsNullOrWhiteSpace(OutputColumnName), nameof(OutputColumnName), OutputColumnName, "must name a column");
            Require(Channels > 0, nameof(Channels), Channels, "must be positive");
            Require(NumberOfFeatures >= MiniRocketKernels.KernelCount, nameof(NumberOfFeatures), NumberOfFeatures, $"must be at least {MiniRocketKernels.KernelCount} (one per kernel)");
            Require(MaximumDilationsPerKernel > 0, nameof(MaximumDilationsPerKernel), MaximumDilationsPerKernel, "must be positive");
            Require(MaximumLength >= 0, nameof(MaximumLength), MaximumLength, "must not be negative (0 takes the longest training row)");
        }

        private static void Require(bool condition, string name, object? value, string rule)
        {
            if (!condition)
                throw new ArgumentOutOfRangeException(name, value, $"MiniRocket option {name} {rule}; it is {value ?? "null"}.");
        }
    }

    private readonly IHost _host;
    private readonly Options _options;

    internal MiniRocketEstimator(IHostEnvironment env, Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Check();
        _host = env.Register(nameof(MiniRocketEstimator));
        _options = options.Copy();
    }

    private string InputColumn => _options.InputColumnName ?? _options.OutputColumnName;

    private int FeatureCount => _options.NumberOfFeatures / MiniRocketKernels.KernelCount * MiniRocketKernels.KernelCount;

    /// <summary>Reads every training row and fits the kernels' dilations, channel subsets and biases.</summary>
    /// <param name="input">The training data.</param>
    /// <returns>The fitted featurizer.</returns>
    public MiniRocketTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var column = MiniRocketTransformer.CheckInput(input.Schema, InputColumn);
        using var ch = _host.Start("Fitting MiniRocket");
        var rows = MiniRocketTransformer.ReadRows(input, column, _options.Channels, "training data").ToList();
        if (rows.Count == 0)
            throw new ArgumentException($"The training data has no rows; MiniRocket draws its biases from training rows of column '{InputColumn}'.", nameof(input));
        int longest = rows.Max(r => r.Length) / _options.Channels;
        int reference = _options.MaximumLength > 0 ? _options.MaximumLength : longest;
        int seed = _options.Seed ?? _host.Rand.Next();
        var kernels = MiniRocketKernels.Fit(rows, _options.Channels, reference, _options.NumberOfFeatures, _options.MaximumDilationsPerKernel, seed);
        ch.Info(MessageSensitivity.None, $"MiniRocket: {kernels.FeatureCount} features, dilations {string.Join(",", kernels.Dilations)} for series of {reference} steps, seed {seed}.");
        return new MiniRocketTransformer(kernels, InputColumn, _options.OutputColumnName);
    }

    /// <summary>The input schema with the output column (a known-size vector of Single) added.</summary>
    /// <param name="inputSchema">The input schema shape.</param>
    /// <returns>The output schema shape.</returns>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        ArgumentNullException.ThrowIfNull(inputSchema);
        var columns = inputSchema.ToDictionary(c => c.Name);
        if (!columns.TryGetValue(InputColumn, out var input))
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Column '{InputColumn}' not found; MiniRocket expected a vector of Single (time-major series).");
        if (input.Kind == SchemaShape.Column.VectorKind.Scalar || input.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(inputSchema), $"Column '{InputColumn}' is {input.Kind} of {input.ItemType}; MiniRocket expected a vector of Single (time-major series).");
        // A column shape cannot be built outside ML.NET; its internal SchemaShape.Create reads one from a schema.
        var schema = new DataViewSchema.Builder().Also(b => b.AddColumn(_options.OutputColumnName, new VectorDataViewType(NumberDataViewType.Single, FeatureCount))).ToSchema();
        var create = typeof(SchemaShape).GetMethod("Create", System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic,
            new[] { typeof(DataViewSchema) })
            ?? throw new InvalidOperationException("This ML.NET version has no SchemaShape.Create(DataViewSchema).");
        var output = ((SchemaShape)create.Invoke(null, new object[] { schema })!).Single();
        columns[_options.OutputColumnName] = output;
        return new SchemaShape(columns.Values);
    }
}

internal static class MiniRocketOptionsExtensions
{
    public static MiniRocketEstimator.Options Copy(this MiniRocketEstimator.Options options) => new MiniRocketEstimator.Options
    {
        OutputColumnName = options.OutputColumnName,
        InputColumnName = options.InputColumnName,
        Channels = options.Channels,
        NumberOfFeatures = options.NumberOfFeatures,
        MaximumDilationsPerKernel = options.MaximumDilationsPerKernel,
        MaximumLength = options.MaximumLength,
        Seed = options.Seed,
    };

    public static DataViewSchema.Builder Also(this DataViewSchema.Builder builder, Action<DataViewSchema.Builder> add)
    {
        add(builder);
        return builder;
    }
}
