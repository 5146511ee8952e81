using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Hazy.Onnx;
using Microsoft.ML.Hazy.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy
{
    /// <summary>Attribution methods and their evaluation: <c>mlContext.Hazy().Interpretation</c>.</summary>
    public sealed class InterpretationCatalog
    {
        private readonly HazyEnvironment _env;

        internal InterpretationCatalog(HazyEnvironment env) => _env = env;

        /// <summary>
        /// A gradient-based attribution method on a Hazy model (its TorchSharp network). The estimator's <c>Fit</c> computes
        /// the data-mean baseline and DeepLiftShap's baseline rows from the data it is given.
        /// </summary>
        /// <param name="model">A Hazy model (or a chain ending in one); other models have no gradients: use Occlusion or KernelShap.</param>
        /// <param name="method">The method.</param>
        /// <param name="target">Which output is explained.</param>
        /// <param name="featureColumnName">The feature column the model reads.</param>
        /// <param name="labelColumnName">The key label column, for <see cref="AttributionTarget.TrueLabel"/>.</param>
        /// <remarks>See <see cref="AttributionEstimator"/> for the input and output columns.</remarks>
        public AttributionEstimator Attribution(ITransformer model, GradientMethod method = GradientMethod.IntegratedGradients, AttributionTarget target = AttributionTarget.TrueLabel,
            string featureColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label) =>
            Attribution(model, new GradientAttributionOptions { Method = method, Target = target, FeatureColumnName = featureColumnName, LabelColumnName = labelColumnName });

        /// <summary>A gradient-based attribution method on a Hazy model, with all options.</summary>
        /// <param name="model">A Hazy model (or a chain ending in one).</param>
        /// <param name="options">The method and its settings.</param>
        public AttributionEstimator Attribution(ITransformer model, GradientAttributionOptions options)
        {
            ArgumentNullException.ThrowIfNull(options);
            var hazy = HazyModelOf(model);
            return new AttributionEstimator(_env, AttributionColumns.From(options), (data, size, seed) =>
            {
                var baselines = Baselines(data, options, size, options.Seed ?? seed);
                var method = ForModel(hazy, options, baselines, options.Seed ?? seed);
                return (method, method.OutputCount);
            });
        }

        /// <summary>
        /// Occlusion (model-agnostic): slides a window over the image- or sequence-shaped feature vector, replaces it, and
        /// credits each feature with the mean drop of the explained score over the windows covering it. Works on any ML.NET
        /// model that scores the feature column (LightGbm, SDCA, an ONNX model, a Hazy model).
        /// </summary>
        /// <param name="model">The model; it must need no input column but the feature column.</param>
        /// <param name="options">The row's shape, the window, the strides and the replacement value.</param>
        /// <param name="target">Which output is explained.</param>
        /// <param name="featureColumnName">The feature column.</param>
        /// <param name="labelColumnName">The key label column, for <see cref="AttributionTarget.TrueLabel"/>.</param>
        /// <param name="scoreColumnName">The model's score column: Single, or a vector with one slot per class.</param>
        /// <remarks>See <see cref="AttributionEstimator"/> for the input and output columns.</remarks>
        public AttributionEstimator Occlusion(ITransformer model, OcclusionAttribution.Options options, AttributionTarget target = AttributionTarget.TrueLabel,
            string featureColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label, string scoreColumnName = DefaultColumnNames.Score)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(options);
            return ModelAgnostic(model, target, featureColumnName, labelColumnName, scoreColumnName, score => new OcclusionAttribution(score, options));
        }

        /// <summary>
        /// KernelSHAP (model-agnostic): Shapley values estimated by weighted least squares over sampled coalitions of features
        /// (or feature groups), exactly efficient: Σ attribution = f(x) − f(baseline). Works on any ML.NET model that scores the feature column.
        /// </summary>
        /// <param name="model">The model; it must need no input column but the feature column.</param>
        /// <param name="numberOfEvaluations">Coalitions scored per row (model evaluations); null takes the default budget.</param>
        /// <param name="target">Which output is explained.</param>
        /// <param name="featureColumnName">The feature column.</param>
        /// <param name="labelColumnName">The key label column, for <see cref="AttributionTarget.TrueLabel"/>.</param>
        /// <param name="scoreColumnName">The model's score column: Single, or a vector with one slot per class.</param>
        /// <remarks>See <see cref="AttributionEstimator"/> for the input and output columns.</remarks>
        public AttributionEstimator KernelShap(ITransformer model, int? numberOfEvaluations = null, AttributionTarget target = AttributionTarget.TrueLabel,
            string featureColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label, string scoreColumnName = DefaultColumnNames.Score) =>
            KernelShap(model, new KernelShapAttribution.Options { NumberOfEvaluations = numberOfEvaluations }, target, featureColumnName, labelColumnName, scoreColumnName);

        /// <summary>KernelSHAP with all options (baseline row, feature groups such as superpixels, seed).</summary>
        /// <param name="model">The model; it must need no input column but the feature column.</param>
        /// <param name="options">The method's options.</param>
        /// <param name="target">Which output is explained.</param>
        /// <param name="featureColumnName">The feature column.</param>
        /// <param name="labelColumnName">The key label column, for <see cref="AttributionTarget.TrueLabel"/>.</param>
        /// <param name="scoreColumnName">The model's score column: Single, or a vector with one slot per class.</param>
        public AttributionEstimator KernelShap(ITransformer model, KernelShapAttribution.Options options, AttributionTarget target = AttributionTarget.TrueLabel,
            string featureColumnName = DefaultColumnNames.Features, string labelColumnName = DefaultColumnNames.Label, string scoreColumnName = DefaultColumnNames.Score)
        {
            ArgumentNullException.ThrowIfNull(model);
            ArgumentNullException.ThrowIfNull(options);
            return ModelAgnostic(model, target, featureColumnName, labelColumnName, scoreColumnName, score => new KernelShapAttribution(score, options));
        }

        private AttributionEstimator ModelAgnostic(ITransformer model, AttributionTarget target, string featureColumnName, string labelColumnName, string scoreColumnName,
            Func<IScoreFunction, IAttributionMethod> create)
        {
            if (target == AttributionTarget.FixedClass)
                throw new ArgumentException("The model-agnostic estimators explain the true or the predicted label; for a fixed class call the method's Attribute with that class as every row's target.", nameof(target));
            var columns = new AttributionColumns(featureColumnName, labelColumnName, DefaultColumnNames.PredictedLabel, "Attribution", target, 0);
            return new AttributionEstimator(_env, columns, (_, size, _) =>
            {
                var score = new TransformerScoreFunction(model, featureColumnName, size, scoreColumnName);
                return (create(score), score.OutputCount);
            });
        }

        /// <summary>The Hazy model inside <paramref name="model"/>, or a clear exception pointing at the model-agnostic methods.</summary>
        internal static HazyPredictionTransformer HazyModelOf(ITransformer model)
        {
            ArgumentNullException.ThrowIfNull(model);
            var found = model switch
            {
                HazyPredictionTransformer h => h,
                TransformerChain<ITransformer> chain => chain.LastTransformer as HazyPredictionTransformer,
                _ => null,
            };
            return found ?? throw new NotSupportedException(
                $"The model {model.GetType().Name} has no gradients: gradient-based attribution needs a Hazy model's TorchSharp network, kept by a model trained in this process " +
                "or by one loaded with mlContext.Hazy().LoadModel from a file saved with its weights (mlContext.Model.SaveAtomically(model, schema, path, includeWeights: true)). " +
                "For any other ML.NET model use a model-agnostic method that needs only scores: mlContext.Hazy().Interpretation.Occlusion(...) or .KernelShap(...).");
        }

        internal static GradientAttribution ForModel(HazyPredictionTransformer model, GradientAttributionOptions options, IReadOnlyList<float[]> baselines, int seed)
        {
            int size = (int)model.RowShape.Aggregate(1L, (a, b) => a * b);
            if (model.Sequence is { IsVariableLength: true })
                throw new NotSupportedException("Attribution on a variable-length sequence model is not supported; pad the sequences to one length and train a fixed-length model.");
            Func<Tensor, Tensor>? forward = null;
            if (model.Sequence is { } layout && model.Network is ISequenceNetwork sequence)
                forward = x => sequence.forward(x.view(x.shape[0], layout.Length, layout.Channels), null);
            return new GradientAttribution(model.Network, size, options, baselines, seed, forward);
        }

        /// <summary>The baseline rows the method averages over: Zero, DataMean and user rows, or DeepLiftShap's draw from the data.</summary>
        internal static IReadOnlyList<float[]> Baselines(IDataView data, GradientAttributionOptions options, int size, int seed)
        {
            var column = data.Schema[options.FeatureColumnName];
            if (options.Method == GradientMethod.DeepLiftShap)
            {
                if (options.DeepLiftShapBaselines < 1)
                    throw new ArgumentOutOfRangeException(nameof(options), options.DeepLiftShapBaselines, "DeepLiftShapBaselines must be at least 1.");
                return ReservoirSample(data, column, options.DeepLiftShapBaselines, seed);
            }
            if (options.Method is not (GradientMethod.IntegratedGradients or GradientMethod.DeepLift))
                return new[] { new float[size] };
            if (options.Baselines is null || options.Baselines.Length == 0)
                throw new ArgumentException("Options.Baselines must name at least one baseline.", nameof(options));
            var rows = new List<float[]>();
            foreach (var kind in options.Baselines.Distinct())
            {
                switch (kind)
                {
                    case BaselineKind.Zero:
                        rows.Add(new float[size]);
                        break;
                    case BaselineKind.DataMean:
                        rows.Add(Mean(data, column, size));
                        break;
                    default:
                        if (options.UserBaselines is null || options.UserBaselines.Length == 0)
                            throw new ArgumentException("BaselineKind.UserSupplied needs Options.UserBaselines.", nameof(options));
                        foreach (var row in options.UserBaselines)
                        {
                            if (row?.Length != size)
                                throw new ArgumentException($"Each row of Options.UserBaselines must have {size} values (column '{options.FeatureColumnName}'); found {row?.Length ?? 0}.", nameof(options));
                            rows.Add(row);
                        }
                        break;
                }
            }
            return rows;
        }

        private static float[] Mean(IDataView data, DataViewSchema.Column column, int size)
        {
            var sum = new double[size];
            long rows = 0;
            foreach (var row in Rows(data, column))
            {
                for (int j = 0; j < size; j++)
                    sum[j] += row[j];
                rows++;
            }
            if (rows == 0)
                throw new ArgumentException($"The data given to Fit has no rows; the DataMean baseline of column '{column.Name}' needs some.", nameof(data));
            return sum.Select(s => (float)(s / rows)).ToArray();
        }

        private static float[][] ReservoirSample(IDataView data, DataViewSchema.Column column, int count, int seed)
        {
            var rand = new Random(seed);
            var sample = new List<float[]>();
            long seen = 0;
            foreach (var row in Rows(data, column))
            {
                seen++;
                if (sample.Count < count)
                    sample.Add(row);
                else if (rand.NextInt64(seen) is var slot && slot < count)
                    sample[(int)slot] = row;
            }
            if (sample.Count == 0)
                throw new ArgumentException($"The data given to Fit has no rows; DeepLiftShap draws its baselines from column '{column.Name}'.", nameof(data));
            return sample.ToArray();
        }

        /// <summary>The dense values of each row of a vector column.</summary>
        private static IEnumerable<float[]> Rows(IDataView data, DataViewSchema.Column column)
        {
            using var cursor = data.GetRowCursor(new[] { column });
            var getter = cursor.GetGetter<VBuffer<float>>(column);
            var buffer = default(VBuffer<float>);
            while (cursor.MoveNext())
            {
                getter(ref buffer);
                yield return buffer.DenseValues().ToArray();
            }
        }
    }
}
