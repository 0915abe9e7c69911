// The app on Flex Consumption, with identity instead of keys: one user-assigned identity signs
// the app in to its storage (host, deployment package, feedback), to Application Insights and to
// Key Vault (the feedback secret). The storage account accepts no shared key and Application
// Insights no instrumentation-key-only ingestion, so no connection string with a secret exists.

@description('Short name every resource name starts from (the azd environment).')
param name string
param location string = resourceGroup().location
param tags object = {}

@secure()
param feedbackSecret string

@description('Object id of the person running azd (optional): may read and review feedback.')
param principalId string = ''

@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(4)
param maxConcurrentAnalyses int = 2

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

// Requests an instance takes at once beyond its analyses: the health probe, the page's files
// and feedback posts, which must not wait behind a photo being analysed (Flex runs Python HTTP
// functions one request at a time per instance unless told).
var lightRequests = 2
var perInstanceConcurrency = maxConcurrentAnalyses + lightRequests

var token = toLower(uniqueString(subscription().id, resourceGroup().id, name))
var packageContainer = 'app-package'
var feedbackTable = 'feedback'
var feedbackContainer = 'feedback-photos'

// Built-in role definitions (ids are the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${token}'
  location: location
  tags: tags
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Telemetry is accepted only with an Entra token (the identity's, below).
    DisableLocalAuth: true
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Without a virtual network the app reaches storage over its public endpoint; shared keys are off, so only identities holding a data role get in
  // checkov:skip=CKV_AZURE_59:Public network access is needed for the same reason; public blob access is off (allowBlobPublicAccess: false)
  // checkov:skip=CKV_AZURE_206:Locally redundant on purpose: a demo's feedback, and ZRS is not offered in every Flex Consumption region
  // checkov:skip=CKV_AZURE_43:The name is 'st' and uniqueString's 13 lowercase letters and digits (15 characters); checkov cannot evaluate the interpolation
  name: 'st${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: packageContainer
  properties: {
    publicAccess: 'None'
  }
}

resource photos 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: feedbackContainer
  properties: {
    publicAccess: 'None'
  }
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource records 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tables
  name: feedbackTable
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Key Vault references are resolved by the app over the public endpoint unless the app joins a virtual network (docs/deploy-azure.md: hardening)
  // checkov:skip=CKV_AZURE_189:As above; access needs Entra RBAC (enableRbacAuthorization), granted to the app's identity only
  // checkov:skip=CKV_AZURE_110:Purge protection would hold the vault's name for the retention period after `azd down`, so an environment could not be recreated; it holds one secret azd can generate again
  // checkov:skip=CKV_AZURE_42:Soft delete is on (7 days); recoverability beyond that needs purge protection, declined above
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41:An expiry would make the Key Vault reference fail and switch feedback tokens off unannounced; rotating is a redeploy with a new secret
  parent: vault
  name: 'feedback-secret'
  properties: {
    value: feedbackSecret
    contentType: 'text/plain'
  }
}

// What the app's identity may do: the Functions host keeps its leases and the deployment
// package in blobs (Owner, as the host's identity-based storage requires); feedback writes kept
// photos (blobs) and records (tables). No queue role: nothing in the app uses queues.
resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The person running azd may read and review feedback (`training feedback`, Storage Explorer).
resource userBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: principalId
    principalType: 'User'
  }
}

resource userTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: principalId
    principalType: 'User'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Scale to zero, no always-ready instances: zone redundancy would bill instances kept warm in each zone
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:A public web page and API, called from browsers
  // checkov:skip=CKV_AZURE_17:Anonymous browsers cannot present client certificates
  // checkov:skip=CKV_AZURE_212:Scales to zero on purpose (cost at rest); Flex Consumption starts instances on demand
  // checkov:skip=CKV_AZURE_213:App Service's health check pings every instance each minute and would keep a scale-to-zero app running and billed; /api/health is there for external probes
  name: 'func-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references in app settings resolve with this identity.
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${packageContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        triggers: {
          http: {
            perInstanceConcurrency: perInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    appBlobOwner
    appTableContributor
    appSecretsUser
  ]
}

// Every setting shared/settings.py reads (tests/test_infra.py holds the two to each other).
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:Public anonymous page (function_app.py says why); Flex Consumption does not support App Service Authentication
  // checkov:skip=CKV_AZURE_63:Requests, traces and logs go to Application Insights; App Service file-system logging is not a Flex Consumption feature
  // checkov:skip=CKV_AZURE_65:Errors are traced in Application Insights; detailed error pages are an IIS feature, not Flex Consumption's
  // checkov:skip=CKV_AZURE_66:Failed requests are recorded by Application Insights; failed request tracing is an IIS feature, not Flex Consumption's
  // checkov:skip=CKV_AZURE_80:No .NET: a Python app
  // checkov:skip=CKV_AZURE_88:Flex Consumption runs the package from its blob container; no Azure Files share
  // checkov:skip=CKV_AZURE_222:These are app settings, not the site's network access (see the site)
  parent: site
  name: 'appsettings'
  properties: {
    // Storage by identity: no connection string, no key.
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // The model shipped in the package (models/default).
    FAKEFACES_MODEL_DIR: ''
    FAKEFACES_MAX_BYTES: '20971520'
    FAKEFACES_MAX_PIXELS: '50000000'
    FAKEFACES_ALLOW_LOOPBACK_URLS: '0'
    FAKEFACES_FETCH_CONNECT_TIMEOUT: '3.05'
    FAKEFACES_FETCH_READ_TIMEOUT: '10'
    FAKEFACES_MAX_CONCURRENT: string(maxConcurrentAnalyses)
    FAKEFACES_QUEUE_TIMEOUT: '10'
    FAKEFACES_MAX_DECODE_BYTES: '104857600'
    FAKEFACES_MAX_FACES: '10'
    FAKEFACES_MAX_FETCHES: '2'
    FAKEFACES_FEEDBACK_TABLE: feedbackTable
    FAKEFACES_FEEDBACK_CONTAINER: feedbackContainer
    FAKEFACES_FEEDBACK_SECRET: '@Microsoft.KeyVault(SecretUri=${secret.properties.secretUri})'
    FAKEFACES_FEEDBACK_PER_MINUTE: '10'
    FAKEFACES_FEEDBACK_TOKEN_HOURS: '24'
    FAKEFACES_FEEDBACK_RETENTION_DAYS: '365'
    FAKEFACES_STORAGE_TIMEOUT: '5'
    // Freed memory goes back to the system sooner (shared.images.return_freed_memory).
    MALLOC_ARENA_MAX: '2'
  }
  dependsOn: [
    appMetricsPublisher
    records
    photos
  ]
}

output functionAppName string = site.name
output url string = 'https://${site.properties.defaultHostName}'
output blobUri string = storage.properties.primaryEndpoints.blob
output tableUri string = storage.properties.primaryEndpoints.table
