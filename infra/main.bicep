// `azd up`: a resource group holding the app on Flex Consumption and what it needs (app.bicep).
// azd fills environmentName and location (asked once), feedbackSecret (generated once, kept in
// .azure/<env>/config.json) and principalId (the signed-in user, for reading feedback).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the azd environment: names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource; one where Flex Consumption runs (`az functionapp list-flexconsumption-locations`).')
@metadata({ azd: { type: 'location' } })
param location string

@secure()
@description('Signs the feedback tokens predict hands out; kept in Key Vault, not in app settings.')
@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })
param feedbackSecret string

@description('Object id of the person running azd: given read and review access to feedback.')
param principalId string = ''

@description('Instance memory (MB). One worker holds ~0.4 GB with both views loaded, up to ~0.7 GB under hostile images: 512 MB cannot hold it.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Analyses at once per instance (FAKEFACES_MAX_CONCURRENT).')
@minValue(1)
@maxValue(4)
param maxConcurrentAnalyses int = 2

@description('Most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

var tags = { 'azd-env-name': environmentName }

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module app 'app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    name: environmentName
    location: location
    tags: tags
    feedbackSecret: feedbackSecret
    principalId: principalId
    instanceMemoryMB: instanceMemoryMB
    maxConcurrentAnalyses: maxConcurrentAnalyses
    maximumInstanceCount: maximumInstanceCount
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output SERVICE_API_URI string = app.outputs.url
output AZURE_STORAGE_BLOB_URI string = app.outputs.blobUri
output AZURE_STORAGE_TABLE_URI string = app.outputs.tableUri
